"""The open-proxy guard and segment naming: hostile targets and Host fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.edge.guard import HostRules, check_request, split_authority
from seedcast.edge.segments import next_segment_target

RULES = HostRules.build(["127.0.20.1"], ["kingcdn.test", "netcinema.test"])


@pytest.mark.parametrize(
    ("method", "target", "hosts"),
    [
        ("GET", "/sample/manifest.mpd", ["127.0.20.1:8080"]),
        ("GET", "/x", ["127.0.20.1"]),
        ("HEAD", "/x", ["video.kingcdn.test"]),
        ("GET", "/x", ["VIDEO.NetCinema.test.:8080"]),
        ("GET", "/x", ["kingcdn.test"]),
        ("GET", "/x", ["localhost:8080"]),
        ("GET", "http://video.kingcdn.test/x", ["video.kingcdn.test"]),
        ("GET", "//evil.example/x", ["127.0.20.1"]),  # origin-form: a path on our upstream
    ],
)
def test_accepted(method: str, target: str, hosts: list[str]) -> None:
    assert check_request(method, target, "1.1", hosts, RULES) is None


@pytest.mark.parametrize(
    ("method", "target", "hosts", "status"),
    [
        ("GET", "http://evil.example/x", ["evil.example"], 400),
        ("GET", "http://evil.example/x", ["127.0.20.1"], 400),
        ("GET", "https://127.0.0.9:443/", ["127.0.20.1"], 400),
        ("CONNECT", "evil.example:443", ["evil.example:443"], 400),
        ("OPTIONS", "*", ["127.0.20.1"], 400),
        ("GET", "/x", ["evil.example"], 421),
        ("GET", "/x", ["notkingcdn.test"], 421),
        ("GET", "/x", ["127.0.0.9"], 421),
        ("GET", "/x", ["user@127.0.20.1"], 400),
        ("GET", "/x", ["127.0.20.1:80:80"], 400),
        ("GET", "/x", ["127.0.20.1", "evil.example"], 400),
        ("GET", "/x", ["a b"], 400),
        ("GET", "/x", [], 400),
        ("POST", "/x", ["127.0.20.1"], 405),
        ("DELETE", "/x", ["127.0.20.1"], 405),
    ],
)
def test_refused(method: str, target: str, hosts: list[str], status: int) -> None:
    refusal = check_request(method, target, "1.1", hosts, RULES)
    assert refusal is not None
    assert refusal.status == status


def test_http10_without_host_is_accepted() -> None:
    assert check_request("GET", "/x", "1.0", [], RULES) is None


def test_ipv6_authority() -> None:
    rules = HostRules.build(["::1"])
    assert split_authority("[::1]:8080") == "[::1]"
    assert rules.allows("[::1]")
    assert split_authority("[::1") is None
    assert split_authority("[::1]x") is None


@given(st.text(max_size=300), st.lists(st.text(max_size=100), max_size=3))
def test_guard_never_raises(target: str, hosts: list[str]) -> None:
    refusal = check_request("GET", target, "1.1", hosts, RULES)
    if refusal is None:
        # Accepted targets name our site only.
        assert (
            target.startswith("/")
            or "kingcdn.test" in target.lower()
            or "netcinema" in target.lower()
            or "localhost" in target.lower()
            or "127.0.20.1" in target
        )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v/chunk-1-00042.m4s", "/v/chunk-1-00043.m4s"),
        ("/v/chunk-720p-00099.m4s?x=1", "/v/chunk-720p-00100.m4s?x=1"),
        ("/v/seg9.ts", "/v/seg10.ts"),
        ("/v/init-0.m4s", None),
        ("/v/manifest.mpd", None),
        ("/v/a.m4s", None),
        ("nopath", None),
    ],
)
def test_next_segment(target: str, expected: str | None) -> None:
    assert next_segment_target(target) == expected
