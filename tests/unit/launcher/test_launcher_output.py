"""What the launcher prints: coloured log prefixes and the status table's rates."""

from __future__ import annotations

import io

from rich.console import Console
from seedcast.launcher.output import ColourLines
from seedcast.launcher.plan import ClusterPlan, ProcessSpec, Tier
from seedcast.launcher.status import format_rates


def capture(lines: list[tuple[str, str, str]]) -> str:
    buffer = io.StringIO()
    sink = ColourLines(Console(file=buffer, width=200, color_system=None), ["edge-1", "dns"])
    for role, name, line in lines:
        sink.show(role, name, line)
    return buffer.getvalue()


def test_log_lines_get_a_name_prefix_and_a_short_time() -> None:
    text = capture(
        [
            (
                "edge",
                "edge-1",
                "2026-11-24T21:30:01.123Z INFO  edge edge-1 cache purge prefix=/sample/",
            )
        ]
    )
    assert text == "edge-1   │ 21:30:01 INFO  cache purge prefix=/sample/\n"


def test_other_lines_are_shown_as_they_are() -> None:
    assert capture([("dns", "dns", "Traceback (most recent call last):")]) == (
        "dns      │ Traceback (most recent call last):\n"
    )


def test_prometheus_info_is_quiet_but_warnings_show() -> None:
    text = capture(
        [
            ("prometheus", "prometheus", 'ts=x caller=y level=info msg="Starting"'),
            ("prometheus", "prometheus", 'ts=x caller=y level=warn msg="Received SIGTERM"'),
        ]
    )
    assert "Starting" not in text
    assert "Received SIGTERM" in text


def test_rates_per_role() -> None:
    assert format_rates("edge", {"req_per_s": 12.345, "hit_ratio": 0.875}) == "req/s 12.3  hit 88%"
    assert format_rates("dns", {"queries_per_s": 3}) == "q/s 3.0"
    assert format_rates("peer", {"peers": 2, "bytes_up": 2048, "bytes_down": 0}) == (
        "peers 2  up 2.0 KiB  down 0 B"
    )
    assert format_rates("tracker", {"torrents": 1, "peers": 3}) == "torrents 1  peers 3"
    assert format_rates("edge", {"req_per_s": "junk"}) == ""


def test_plan_survives_json_for_the_detached_launcher() -> None:
    plan = ClusterPlan(
        (
            ProcessSpec(
                "edge",
                "edge-1",
                ("python", "-m", "seedcast", "edge"),
                "127.0.20.1:8080",
                metrics=None,
                tier=Tier.EDGES,
                region="eu",
            ),
        ),
        ("dns: skipped (not built)",),
    )
    assert ClusterPlan.from_json(plan.to_json()) == plan
