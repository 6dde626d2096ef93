"""Byte ranges (RFC 9110 14): parse a viewer's ``Range`` and resolve it against a length.

How it works: :func:`parse_range` reads ``bytes=first-last``, ``bytes=first-``
and ``bytes=-suffix``; anything else (another unit, bad syntax, several
ranges, absurdly long input) gives None, which the edge answers by ignoring the
header and sending the whole object, as RFC 9110 14.2 allows. Several ranges
would need ``multipart/byteranges``; players never ask for them, so they are
treated the same way. :func:`resolve` clamps a parsed range to an object of
known length and returns None when it is unsatisfiable (416).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Longer Range values are not ranges a player sends; ignore them.
MAX_RANGE_HEADER = 200
_MAX_DIGITS = 18


@dataclass(frozen=True, slots=True)
class ByteRange:
    """``first``/``last`` inclusive as written; ``first is None``: the last ``last`` bytes."""

    first: int | None
    last: int | None

    def __post_init__(self) -> None:
        if self.first is None and self.last is None:
            raise ValueError("a byte range needs a first or a last position")
        if self.first is not None and self.last is not None and self.last < self.first:
            raise ValueError("last position before first")

    @property
    def start_known(self) -> bool:
        return self.first is not None


@dataclass(frozen=True, slots=True)
class Span:
    """A satisfiable range of an object: ``start`` inclusive, ``end`` exclusive."""

    start: int
    end: int
    total: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end - 1}/{self.total}"


def _position(text: str) -> int | None:
    text = text.strip(" \t")
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_range(value: str | None) -> ByteRange | None:
    """A single byte range from a ``Range`` value, or None to ignore the header."""
    if value is None or len(value) > MAX_RANGE_HEADER:
        return None
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.partition("-")
    if not dash:
        return None
    if first_text.strip(" \t") == "":
        suffix = _position(last_text)
        if suffix is None:
            return None
        return ByteRange(None, suffix)
    first = _position(first_text)
    if first is None:
        return None
    if last_text.strip(" \t") == "":
        return ByteRange(first, None)
    last = _position(last_text)
    if last is None or last < first:
        return None
    return ByteRange(first, last)


def resolve(byte_range: ByteRange, total: int) -> Span | None:
    """The span of an object of ``total`` bytes, or None when unsatisfiable (416)."""
    if byte_range.first is None:
        suffix = byte_range.last or 0
        if suffix == 0 or total == 0:
            return None
        return Span(max(0, total - suffix), total, total)
    if byte_range.first >= total:
        return None
    end = total if byte_range.last is None else min(total, byte_range.last + 1)
    return Span(byte_range.first, end, total)
