"""HTTP semantics shared by every role (RFC 9110): ranges, dates, entity-tags, conditionals.

Pure functions, no IO, no clock; every parser takes any text and returns a
value or None (never raises), so what a peer sends can't crash a caller.

* Ranges (section 14): :func:`parse_range` reads one ``bytes=first-last``,
  ``bytes=first-`` or ``bytes=-suffix``; anything else (another unit, bad
  syntax, several ranges, a value over :data:`MAX_RANGE_HEADER` characters)
  is None, which callers answer by ignoring the header and sending the whole
  representation, as section 14.2 allows (players never ask for several
  ranges, which would need ``multipart/byteranges``). Numbers of any length
  are read exactly: a huge last position is clamped, a huge first position is
  unsatisfiable. :func:`resolve` turns a range into a :class:`Span` of an
  object of known length, or :class:`Unsatisfiable` (416).
  :func:`parse_content_range` reads a 206's ``Content-Range``.
* Dates (section 5.6.7): :func:`http_date` writes IMF-fixdate,
  :func:`parse_http_date` reads all three forms (a date without a zone is GMT).
* Entity-tags (section 8.8.3): :func:`entity_tags` splits an ``If-Match`` /
  ``If-None-Match`` list (commas inside quotes stay), :func:`strong_match` and
  :func:`weak_match` compare.
* Conditionals (section 13.2.2) in the RFC's order: :func:`preconditions`
  gives 412, 304 or None (go on); :func:`range_answer` then decides the
  Range, honoured only for GET and only while ``If-Range`` still matches.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "MAX_RANGE_HEADER",
    "ByteRange",
    "ContentRange",
    "Span",
    "Unsatisfiable",
    "entity_tags",
    "http_date",
    "if_range_allows",
    "parse_content_range",
    "parse_http_date",
    "parse_range",
    "preconditions",
    "range_answer",
    "resolve",
    "strong_match",
    "weak_match",
]

#: Longer Range values are not ranges a player sends; they are ignored (whole body).
#: This also bounds the digits ``int()`` ever reads.
MAX_RANGE_HEADER = 200
_MAX_DATE = 64
_MAX_LIST = 8192

GetHeader = Callable[[str], "str | None"]
"""Looks a request field up by lower-case name; None when absent."""


# --- ranges ---------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    """No byte of the range exists in an object of ``total`` bytes: answer 416."""

    total: int

    def content_range(self) -> str:
        return f"bytes */{self.total}"


def _position(text: str) -> int | None:
    text = text.strip(" \t")
    if not text or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_range(value: str | None) -> ByteRange | None:
    """A single byte range from a ``Range`` value, or None to ignore the header."""
    if value is None or len(value) > MAX_RANGE_HEADER:
        return None
    unit, sep, spec = value.partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.partition("-")
    if not dash:
        return None
    if first_text.strip(" \t") == "":
        suffix = _position(last_text)
        return None if suffix is None else ByteRange(None, suffix)
    first = _position(first_text)
    if first is None:
        return None
    if last_text.strip(" \t") == "":
        return ByteRange(first, None)
    last = _position(last_text)
    if last is None or last < first:
        return None  # an invalid range-spec: the header is ignored
    return ByteRange(first, last)


def resolve(byte_range: ByteRange, total: int) -> Span | Unsatisfiable:
    """The span of ``byte_range`` in an object of ``total`` bytes (RFC 9110 14.1.2)."""
    if byte_range.first is None:
        suffix = byte_range.last or 0
        if suffix == 0 or total == 0:
            return Unsatisfiable(total)
        return Span(max(0, total - suffix), total, total)
    if byte_range.first >= total:
        return Unsatisfiable(total)
    end = total if byte_range.last is None else min(total, byte_range.last + 1)
    return Span(byte_range.first, end, total)


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A 206's ``Content-Range: bytes first-last/total``; ``total`` None for ``*``."""

    first: int
    last: int
    total: int | None


_CONTENT_RANGE = re.compile(r"bytes[ \t]+([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18}|\*)")


def parse_content_range(value: str | None) -> ContentRange | None:
    """Read a satisfied ``Content-Range``; None when absent, malformed or inconsistent."""
    if value is None or len(value) > MAX_RANGE_HEADER:
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (total is not None and last >= total):
        return None
    return ContentRange(first, last, total)


# --- dates ----------------------------------------------------------------------------------


def http_date(timestamp: float) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return email.utils.formatdate(timestamp, usegmt=True)


def parse_http_date(text: str | None) -> float | None:
    """Seconds since the epoch for any of HTTP's three date formats, else None."""
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > _MAX_DATE:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:  # pragma: no cover - older Pythons returned None
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)  # asctime has no zone: it is GMT
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


# --- entity-tags ----------------------------------------------------------------------------

_ENTITY_TAG = re.compile(r'[ \t]*((?:W/)?"[^"]*")[ \t]*(?:,|$)')


def entity_tags(value: str) -> list[str] | None:
    """The entity-tags of an ``If-Match`` / ``If-None-Match`` value; None for ``*``.

    Malformed members are skipped (they can match nothing); commas inside a
    quoted tag stay part of it.
    """
    if value.strip(" \t") == "*":
        return None
    if len(value) > _MAX_LIST:
        return []
    tags: list[str] = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None:
            comma = value.find(",", position)
            if comma < 0:
                break
            position = comma + 1
            continue
        tags.append(match.group(1))
        position = match.end()
    return tags


def weak_match(a: str, b: str) -> bool:
    """Weak comparison (RFC 9110 8.8.3.2): the opaque tags are equal, W/ or not."""
    return a.strip().removeprefix("W/") == b.strip().removeprefix("W/")


def strong_match(a: str, b: str) -> bool:
    """Strong comparison: both tags strong and equal."""
    a, b = a.strip(), b.strip()
    return not a.startswith("W/") and not b.startswith("W/") and a == b


# --- conditionals ---------------------------------------------------------------------------


def preconditions(
    method: str, get: GetHeader, etag: str | None, last_modified: float | None
) -> int | None:
    """RFC 9110 13.2.2 steps 1-4 for a representation: 412, 304, or None to go on.

    ``etag`` and ``last_modified`` (seconds) describe the selected representation.
    """
    if_match = get("if-match")
    if if_match is not None:
        tags = entity_tags(if_match)
        if tags is not None and (etag is None or not any(strong_match(t, etag) for t in tags)):
            return 412
    else:
        since = parse_http_date(get("if-unmodified-since"))
        if since is not None and last_modified is not None and last_modified > since:
            return 412
    if_none_match = get("if-none-match")
    if if_none_match is not None:
        tags = entity_tags(if_none_match)
        if tags is None or (etag is not None and any(weak_match(t, etag) for t in tags)):
            return 304 if method in ("GET", "HEAD") else 412
    elif method in ("GET", "HEAD"):
        since = parse_http_date(get("if-modified-since"))
        if since is not None and last_modified is not None and last_modified <= since:
            return 304
    return None


def if_range_allows(value: str | None, etag: str | None, last_modified: float | None) -> bool:
    """RFC 9110 13.1.5: may a Range be honoured? True when there is no ``If-Range``."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return etag is not None and strong_match(value, etag)
    date = parse_http_date(value)
    return date is not None and last_modified is not None and int(date) == int(last_modified)


def range_answer(
    method: str, get: GetHeader, etag: str | None, last_modified: float | None, total: int
) -> Span | Unsatisfiable | None:
    """RFC 9110 13.2.2 step 5 and 14.2: the Range to answer, or None for the whole body.

    Range is defined for GET only: HEAD (and anything else) gets the whole
    representation's headers, as without Range.
    """
    if method != "GET":
        return None
    byte_range = parse_range(get("range"))
    if byte_range is None or not if_range_allows(get("if-range"), etag, last_modified):
        return None
    return resolve(byte_range, total)
