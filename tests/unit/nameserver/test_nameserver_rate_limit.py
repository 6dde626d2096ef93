"""Response rate limiting: token buckets per prefix, slip, bounded memory, no amplification."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import pytest
from seedcast.nameserver.answerer import Answerer, Transport
from seedcast.nameserver.rate_limit import RateDecision, ResponseRateLimiter
from seedcast.testing.nameserver import example_config


def test_burst_then_limited_with_slip_every_second() -> None:
    limiter = ResponseRateLimiter(5, slip=2)
    decisions = [limiter.check("127.0.41.7", 0.0) for _ in range(9)]
    assert decisions[:5] == [RateDecision.ALLOW] * 5
    assert decisions[5:] == [
        RateDecision.DROP,
        RateDecision.SLIP,
        RateDecision.DROP,
        RateDecision.SLIP,
    ]
    stats = limiter.statistics()
    assert (stats.allowed, stats.dropped, stats.slipped) == (5, 2, 2)


def test_tokens_refill_with_time() -> None:
    limiter = ResponseRateLimiter(10, slip=0)
    for _ in range(10):
        assert limiter.check("127.0.41.7", 0.0) is RateDecision.ALLOW
    assert limiter.check("127.0.41.7", 0.0) is RateDecision.DROP
    assert limiter.check("127.0.41.7", 0.1) is RateDecision.ALLOW  # 0.1 s * 10/s = one token
    assert limiter.check("127.0.41.7", 0.1) is RateDecision.DROP


def test_limits_are_per_prefix() -> None:
    limiter = ResponseRateLimiter(1, slip=1)
    assert limiter.check("127.0.41.7", 0.0) is RateDecision.ALLOW
    assert limiter.check("127.0.41.8", 0.0) is RateDecision.SLIP  # same /24
    assert limiter.check("127.0.42.8", 0.0) is RateDecision.ALLOW  # another /24
    assert limiter.check("2001:db8::1", 0.0) is RateDecision.ALLOW
    assert limiter.check("2001:db8::2", 0.0) is RateDecision.SLIP  # same /56


def test_memory_is_bounded() -> None:
    limiter = ResponseRateLimiter(1, max_clients=50)
    for index in range(5000):
        limiter.check(f"10.{index // 256 % 256}.{index % 256}.1", float(index))
    stats = limiter.statistics()
    assert stats.tracked_clients == 50
    assert stats.forgotten_clients == 5000 - 50
    assert len(limiter._prefixes) <= 50


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="rate"):
        ResponseRateLimiter(0)


def test_answerer_slips_truncated_and_never_amplifies() -> None:
    answerer = Answerer(example_config(rate_limit=2.0, rate_limit_slip=2), rng=random.Random(1))
    query = dns.message.make_query("video.netcinema.test", "A")
    wire = query.to_wire()
    replies = [answerer.answer(wire, "127.0.41.9", Transport.UDP, 0.0) for _ in range(6)]
    sent = [reply for reply in replies if reply is not None]
    assert len(sent) == 4  # 2 allowed, then drop, slip, drop, slip
    for reply in sent[2:]:
        response = dns.message.from_wire(reply)
        assert response.flags & dns.flags.TC
        assert not response.answer
        assert query.is_response(response)
        assert len(reply) <= len(wire)
    stats = answerer.statistics()
    assert stats.rate_limited == {"dropped": 2, "slipped": 2}
    # TCP is never limited: the handshake proved the address.
    assert answerer.answer(wire, "127.0.41.9", Transport.TCP, 0.0) is not None
