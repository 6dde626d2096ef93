"""The origin's HTTP decisions, without IO: paths, validators, conditionals, ranges.

Everything the origin decides about a request lives here as pure functions of
the request's method, raw path and headers, the file's facts (size, mtime,
inode) and ``now``; the trio shell (:mod:`seedcast.origin.server`) only stats
files and sends what these functions return.

Paths. :func:`check_target` reads the *raw* request path (before
percent-decoding) and refuses, with a reason that is counted in a metric,
anything that could climb out of the library: a bad or NUL percent-escape,
control characters, backslashes, an encoded ``/`` (``..%2f``), ``.`` or
``..`` segments in any spelling (``%2e%2e``), empty segments (``//etc``),
hidden names, overlong paths. What is left is a list of plain segments that
the shell maps to one file *name* inside one video folder; it never joins a
user string into a path with more than one component.

Conditional GET (RFC 9110 section 13.2.2), in the RFC's order: If-Match ->
412, else If-Unmodified-Since -> 412; If-None-Match -> 304 (weak
comparison), else If-Modified-Since -> 304; then Range, honoured only when
If-Range (if present) still matches. A single satisfiable range gives 206
with Content-Range; an unsatisfiable one 416 with ``Content-Range: bytes
*/size``; several ranges, an unknown unit or a malformed header give the
whole body (200), which RFC 9110 allows.
"""

from __future__ import annotations

import email.utils
import enum
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CORS_HEADERS",
    "PREFLIGHT_HEADERS",
    "FileDecision",
    "FileFacts",
    "PathRefused",
    "TargetCheck",
    "ViewerTracker",
    "check_target",
    "decide_file",
    "etag_for",
    "http_date",
    "parse_http_date",
    "parse_range",
]

MAX_PATH_LENGTH = 1024
MAX_SEGMENTS = 8

ALLOW = "GET, HEAD, OPTIONS"
EXPOSED = "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, X-Served-By"
CORS_HEADERS: tuple[tuple[str, str], ...] = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", EXPOSED),
)
PREFLIGHT_HEADERS: tuple[tuple[str, str], ...] = (
    *CORS_HEADERS,
    ("Access-Control-Allow-Methods", ALLOW),
    (
        "Access-Control-Allow-Headers",
        "Range, If-None-Match, If-Modified-Since, If-Range, Cache-Control",
    ),
    ("Access-Control-Max-Age", "86400"),
)


class PathRefused(enum.Enum):
    """Why a request path was refused; the value is the metric label."""

    BAD_ESCAPE = "bad_escape"
    NOT_UTF8 = "not_utf8"
    NUL = "nul"
    CONTROL = "control"
    BACKSLASH = "backslash"
    ENCODED_SLASH = "encoded_slash"
    DOT_SEGMENT = "dot_segment"
    EMPTY_SEGMENT = "empty_segment"
    HIDDEN = "hidden"
    TOO_LONG = "too_long"
    NOT_ABSOLUTE = "not_absolute"
    SYMLINK = "symlink"
    """Found by the shell: a symlink inside the library (never followed)."""

    @property
    def status(self) -> int:
        return 404 if self in (PathRefused.HIDDEN, PathRefused.SYMLINK) else 400


@dataclass(frozen=True, slots=True)
class TargetCheck:
    segments: tuple[str, ...] = ()
    refused: PathRefused | None = None
    trailing_slash: bool = False

    @property
    def ok(self) -> bool:
        return self.refused is None


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_DOTS = frozenset({".", ".."})


# Paths made only of plain segments (no escapes, no backslash, no segment starting
# with a dot) need no decoding: the common case takes one regex match.
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9_.~-]*)+/?")


def check_target(raw_path: str) -> TargetCheck:
    """Split a raw request path into safe, decoded segments, or say why not.

    ``"/sample/chunk-0-00001.m4s"`` -> segments ``("sample", "chunk-0-00001.m4s")``.
    """
    if len(raw_path) <= MAX_PATH_LENGTH and _PLAIN_PATH.fullmatch(raw_path):
        trailing = raw_path.endswith("/")
        parts = (raw_path[1:-1] if trailing else raw_path[1:]).split("/")
        if len(parts) <= MAX_SEGMENTS:
            return TargetCheck(segments=tuple(parts), trailing_slash=trailing)
    return check_target_slowly(raw_path)


def check_target_slowly(raw_path: str) -> TargetCheck:
    """:func:`check_target` without the fast path (every path goes through decoding)."""
    if len(raw_path) > MAX_PATH_LENGTH:
        return TargetCheck(refused=PathRefused.TOO_LONG)
    if not raw_path.startswith("/"):
        return TargetCheck(refused=PathRefused.NOT_ABSOLUTE)
    if raw_path == "/":
        return TargetCheck(segments=())
    body = raw_path[1:]
    trailing = body.endswith("/")
    if trailing:
        body = body[:-1]
    raw_segments = body.split("/")
    if len(raw_segments) > MAX_SEGMENTS:
        return TargetCheck(refused=PathRefused.TOO_LONG)
    segments: list[str] = []
    for raw in raw_segments:
        decoded = _decode_segment(raw)
        if isinstance(decoded, PathRefused):
            return TargetCheck(refused=decoded)
        if decoded == "":
            return TargetCheck(refused=PathRefused.EMPTY_SEGMENT)
        if decoded in _DOTS:
            return TargetCheck(refused=PathRefused.DOT_SEGMENT)
        if "/" in decoded:
            return TargetCheck(refused=PathRefused.ENCODED_SLASH)
        if "\\" in decoded:
            return TargetCheck(refused=PathRefused.BACKSLASH)
        if decoded.startswith("."):
            return TargetCheck(refused=PathRefused.HIDDEN)
        segments.append(decoded)
    return TargetCheck(segments=tuple(segments), trailing_slash=trailing)


def _decode_segment(raw: str) -> str | PathRefused:
    if "%" in raw:
        # Every % must start a two-hex-digit escape.
        if raw.count("%") != len(_ESCAPE.findall(raw)):
            return PathRefused.BAD_ESCAPE
        try:
            data = _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), raw).encode("latin-1")
            text = data.decode("utf-8")
        except UnicodeEncodeError:
            return PathRefused.NOT_UTF8  # a raw non-latin-1 character next to escapes
        except UnicodeDecodeError:
            return PathRefused.NOT_UTF8
    else:
        text = raw
    for char in text:
        code = ord(char)
        if code == 0:
            return PathRefused.NUL
        if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
            return PathRefused.CONTROL
    return text


# --- validators ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileFacts:
    size: int
    mtime: float
    inode: int = 0
    mtime_ns: int = 0


def etag_for(facts: FileFacts) -> str:
    """A strong ETag: changes whenever the file is replaced (new inode, size or mtime)."""
    mtime_ns = facts.mtime_ns or int(facts.mtime * 1_000_000_000)
    return f'"{facts.inode:x}-{facts.size:x}-{mtime_ns:x}"'


def http_date(timestamp: float) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return email.utils.formatdate(timestamp, usegmt=True)


def parse_http_date(text: str) -> float | None:
    """Seconds since the epoch for any of HTTP's three date formats, else None."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        import datetime

        parsed = parsed.replace(tzinfo=datetime.UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def _entity_tags(header: str) -> list[str] | None:
    """The entity-tags of an If-Match / If-None-Match value; None for ``*``."""
    if header.strip() == "*":
        return None
    return [tag for tag in (part.strip() for part in header.split(",")) if tag]


def _weak_equal(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


def _strong_equal(a: str, b: str) -> bool:
    return not a.startswith("W/") and not b.startswith("W/") and a == b


# --- ranges -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ByteRange:
    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


class RangeResult(enum.Enum):
    NONE = "none"
    """Serve the whole body (no header, another unit, malformed, or several ranges)."""
    SINGLE = "single"
    UNSATISFIABLE = "unsatisfiable"


_RANGE_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
MAX_RANGE_SPECS = 100


def parse_range(header: str | None, size: int) -> tuple[RangeResult, ByteRange | None]:
    """Decide a Range header against a body of ``size`` bytes."""
    if header is None:
        return RangeResult.NONE, None
    unit, sep, specs_text = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return RangeResult.NONE, None
    specs = specs_text.split(",")
    if len(specs) > MAX_RANGE_SPECS:
        return RangeResult.NONE, None
    parsed: list[tuple[str, str]] = []
    for spec in specs:
        match = _RANGE_SPEC.match(spec)
        if match is None or (not match.group(1) and not match.group(2)):
            return RangeResult.NONE, None
        if match.group(1) and match.group(2) and int(match.group(2)) < int(match.group(1)):
            return RangeResult.NONE, None  # invalid range-spec: ignore the header
        parsed.append((match.group(1), match.group(2)))
    if len(parsed) != 1:
        return RangeResult.NONE, None
    first_text, last_text = parsed[0]
    if first_text:
        first = int(first_text)
        if first >= size:
            return RangeResult.UNSATISFIABLE, None
        last = min(int(last_text), size - 1) if last_text else size - 1
        return RangeResult.SINGLE, ByteRange(first, last)
    suffix = int(last_text)
    if suffix == 0 or size == 0:
        return RangeResult.UNSATISFIABLE, None
    return RangeResult.SINGLE, ByteRange(max(0, size - suffix), size - 1)


# --- the decision for one file ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileDecision:
    status: int
    headers: list[tuple[str, str]]
    offset: int = 0
    length: int = 0
    """Bytes of the file to send from ``offset`` (0 for 304/412/416 and HEAD-less bodies)."""

    @property
    def has_body(self) -> bool:
        return self.status in (200, 206)


def decide_file(
    method: str,
    headers: Callable[[str], str | None] | Mapping[str, str],
    facts: FileFacts,
    *,
    content_type: str,
    cache_control: str,
) -> FileDecision:
    """Status, headers and byte span for GET/HEAD of a file with ``facts``.

    ``headers(name)`` returns a request header (lower-case name) or None.
    """
    get: Callable[[str], str | None] = headers.get if isinstance(headers, Mapping) else headers
    etag = etag_for(facts)
    last_modified = int(facts.mtime)
    validators = [
        ("ETag", etag),
        ("Last-Modified", http_date(last_modified)),
        ("Cache-Control", cache_control),
    ]
    # 1. If-Match / 2. If-Unmodified-Since
    if_match = get("if-match")
    if if_match is not None:
        tags = _entity_tags(if_match)
        if tags is not None and not any(_strong_equal(tag, etag) for tag in tags):
            return FileDecision(412, [*validators, *CORS_HEADERS])
    else:
        since = get("if-unmodified-since")
        if since is not None:
            date = parse_http_date(since)
            if date is not None and last_modified > date:
                return FileDecision(412, [*validators, *CORS_HEADERS])
    # 3. If-None-Match / 4. If-Modified-Since
    if_none_match = get("if-none-match")
    if if_none_match is not None:
        tags = _entity_tags(if_none_match)
        if tags is None or any(_weak_equal(tag, etag) for tag in tags):
            return FileDecision(304, [*validators, *CORS_HEADERS])
    elif method in ("GET", "HEAD"):
        since = get("if-modified-since")
        if since is not None:
            date = parse_http_date(since)
            if date is not None and last_modified <= date:
                return FileDecision(304, [*validators, *CORS_HEADERS])
    base = [
        ("Content-Type", content_type),
        *validators,
        ("Accept-Ranges", "bytes"),
        *CORS_HEADERS,
    ]
    # 5. Range (GET only), guarded by If-Range
    range_header = get("range") if method == "GET" else None
    if range_header is not None:
        if_range = get("if-range")
        if if_range is not None and not _if_range_matches(if_range, etag, last_modified):
            range_header = None
    result, byte_range = parse_range(range_header, facts.size)
    if result is RangeResult.UNSATISFIABLE:
        return FileDecision(416, [*base, ("Content-Range", f"bytes */{facts.size}")])
    if result is RangeResult.SINGLE and byte_range is not None:
        return FileDecision(
            206,
            [*base, ("Content-Range", f"bytes {byte_range.first}-{byte_range.last}/{facts.size}")],
            offset=byte_range.first,
            length=byte_range.length,
        )
    return FileDecision(200, base, offset=0, length=facts.size)


def _if_range_matches(if_range: str, etag: str, last_modified: int) -> bool:
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return _strong_equal(value, etag)
    date = parse_http_date(value)
    return date is not None and int(date) == last_modified


# --- viewers ------------------------------------------------------------------------------

VIEWER_COOKIE = "seedcast_viewer"
_VIEWER_ID = re.compile(r"^[0-9a-f]{32}$")


def viewer_from_cookies(cookie_headers: Iterable[str]) -> str | None:
    """The viewer id in the Cookie header(s), if one is there and well-formed."""
    for header in cookie_headers:
        if len(header) > 8192:
            continue
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name == VIEWER_COOKIE:
                value = value.strip().strip('"')
                if _VIEWER_ID.match(value):
                    return value
    return None


def viewer_cookie(viewer_id: str, *, max_age: int = 365 * 24 * 3600) -> str:
    return f"{VIEWER_COOKIE}={viewer_id}; Path=/; Max-Age={max_age}; SameSite=Lax; HttpOnly"


@dataclass(slots=True)
class ViewerTracker:
    """Unique viewers by cookie. Memory is bounded: past ``capacity`` ids, new
    ones are counted but not remembered (so a returning one may count twice)."""

    rng: random.Random
    capacity: int = 1_000_000
    _seen: set[str] = field(default_factory=set)
    overflow: int = 0
    issued: int = 0

    def observe(self, cookie_headers: Sequence[str]) -> tuple[str, bool]:
        """(viewer id, whether it is new and needs a Set-Cookie)."""
        viewer = viewer_from_cookies(cookie_headers)
        if viewer is not None:
            self._remember(viewer)
            return viewer, False
        viewer = f"{self.rng.getrandbits(128):032x}"
        self.issued += 1
        self._remember(viewer)
        return viewer, True

    def note(self, cookie_headers: Sequence[str]) -> None:
        """Count a viewer seen on a request that doesn't hand out cookies."""
        viewer = viewer_from_cookies(cookie_headers)
        if viewer is not None:
            self._remember(viewer)

    def _remember(self, viewer: str) -> None:
        if viewer in self._seen:
            return
        if len(self._seen) < self.capacity:
            self._seen.add(viewer)
        else:
            self.overflow += 1

    @property
    def unique(self) -> int:
        return len(self._seen) + self.overflow
