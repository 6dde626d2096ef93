"""`seedcast bench http` reads wrk's report: the parser and the table, without running wrk."""

from __future__ import annotations

from seedcast.bench.http import Result, best_rounds, format_table, parse_wrk

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:40000/1k
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.00ms   90.00%
    Req/Sec    58.00k     2.00k   60.00k    80.00%
  Latency Distribution
     50%    1.00ms
     75%    1.20ms
     90%    1.40ms
     99%  850.00us
  580000 requests in 10.00s, 690.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  58000.00
Transfer/sec:     69.00MB
"""


def test_parse_wrk() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed["requests"] == 580000
    assert parsed["req_per_s"] == 58000.0
    assert parsed["p99_ms"] == 0.85
    assert round(parsed["mb_per_s"], 1) == round(69 * 1024 * 1024 / 1e6, 1)
    assert parsed["errors"] == 7


def _result(server: str, size: str, rate: float, cpu: float) -> Result:
    requests = int(rate * 10)
    return Result(server, size, requests, rate, 1.0, 1.0, 0, cpu, cpu / requests * 1e6, 0.0)


def test_best_round_and_ratios() -> None:
    results = [
        _result("seedcast", "1k", 30000, 9.0),
        _result("nginx", "1k", 60000, 9.0),
        _result("seedcast", "1k", 36000, 9.0),
        _result("aiohttp", "1k", 5000, 9.0),
    ]
    best = best_rounds(results)
    assert [(r.server, r.req_per_s) for r in best] == [
        ("seedcast", 36000),
        ("nginx", 60000),
        ("aiohttp", 5000),
    ]
    table = format_table(best)
    assert "0.60x" in table  # 36k / 60k
    assert "7.20x" in table  # 36k / 5k
    assert "1.67x" in table  # CPU per request: (9/360000) / (9/600000)
