from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.units import (
    KiB,
    MiB,
    format_size,
    parse_duration,
    parse_host_port,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64MiB", 64 * MiB),
        ("512KiB", 512 * KiB),
        ("2GB", 2_000_000_000),
        ("100", 100),
        (" 1.5 kib ", 1536),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4MiB/s", 4 * MiB),
        ("32Mbit/s", 4_000_000),
        ("500KB/s", 500_000),
        ("0", 0),
        ("1gbit", 125_000_000),
    ],
)
def test_parse_rate(text: str, expected: float) -> None:
    assert parse_rate(text) == expected


def test_parse_duration() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2min") == 120
    assert parse_duration(3) == 3.0


@pytest.mark.parametrize("text", ["", "MiB", "-1", "1 furlong", "1e9", "1.2.3"])
def test_bad_sizes_raise_value_error_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:53", ("::1", 53)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:99999", "127.0.0.1:http", ":80", "127.0.0.1"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ValueError, match=r"port|HOST:PORT|host"):
        parse_host_port(text)


def test_default_port_applies_when_missing() -> None:
    assert parse_host_port("127.0.0.1", default_port=53) == ("127.0.0.1", 53)


@given(st.text(max_size=30))
def test_parsers_raise_only_value_error(text: str) -> None:
    for parse in (parse_size, parse_rate, parse_duration):
        try:
            parse(text)
        except ValueError:
            pass


def test_format_size() -> None:
    assert format_size(1536) == "1.5 KiB"
    assert format_size(10) == "10 B"
