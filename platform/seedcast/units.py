"""Unit constants and parsers for sizes, rates and durations.

Config files and command lines say ``64MiB``, ``4MiB/s``, ``32Mbit/s``, ``500ms``;
everything inside Seedcast is bytes, bytes per second and seconds.
"""

from __future__ import annotations

import re

SECONDS = 1.0
MILLISECONDS = 0.001
MINUTES = 60.0

KB = 1000
MB = 1000 * KB
GB = 1000 * MB
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": KB,
    "kb": KB,
    "m": MB,
    "mb": MB,
    "g": GB,
    "gb": GB,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
}
_BIT_UNITS = {"bit": 1, "kbit": KB, "mbit": MB, "gbit": GB}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": MILLISECONDS, "m": MINUTES, "min": MINUTES}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str | int | float) -> int:
    """``"64MiB"`` -> 67108864. Raises ValueError naming the text when it is not a size."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return int(text)
    match = _NUMBER_UNIT.match(text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 1048576, 512KiB, 64MiB, 2GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_rate(text: str | int | float) -> float:
    """Bytes per second from ``"4MiB/s"``, ``"32Mbit/s"``, ``"500KB"`` or a number.

    ``0`` means unlimited wherever a rate cap is configured.
    """
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"rate must not be negative: {text}")
        return float(text)
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    match = _NUMBER_UNIT.match(body)
    if match:
        unit = match.group(2).lower()
        if unit in _BIT_UNITS:
            return float(match.group(1)) * _BIT_UNITS[unit] / 8
        if unit in _SIZE_UNITS:
            return float(match.group(1)) * _SIZE_UNITS[unit]
    raise ValueError(f"not a rate: {text!r} (examples: 4MiB/s, 32Mbit/s, 500KB/s, 0 = unlimited)")


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``"500ms"``, ``"20s"``, ``"2min"`` or a number of seconds."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative: {text}")
        return float(text)
    match = _NUMBER_UNIT.match(text)
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        raise ValueError(f"not a duration: {text!r} (examples: 20s, 500ms, 2min)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def format_size(size: float) -> str:
    """1536 -> ``"1.5 KiB"``: for humans, never parsed back."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(size) >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def format_rate(rate: float) -> str:
    return f"{format_size(rate)}/s"


def parse_host_port(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """``"127.0.10.1:8080"`` -> (host, port); ``[::1]:53`` works too."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if text.startswith("[") and "]" in text:
        closing = text.index("]")
        host = text[1:closing]
        rest = text[closing + 1 :]
        sep, port_text = (":", rest[1:]) if rest.startswith(":") else ("", "")
    elif not sep or ("." not in host and ":" in host):
        host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise ValueError(f"not HOST:PORT: {text!r} (example: 127.0.10.1:8080)")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in {text!r}: ports are 0..65535")
    if not host:
        raise ValueError(f"missing host in {text!r} (example: 127.0.10.1:8080)")
    return host, int(port_text)
