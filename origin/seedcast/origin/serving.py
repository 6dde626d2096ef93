"""The origin's HTTP decisions, without IO: paths, validators, conditionals, ranges.

Everything the origin decides about a request lives here as pure functions of
the request's method, raw path and headers, the file's facts (size, mtime,
inode) and ``now``; the shell (:mod:`seedcast.origin.app`) only stats
files and sends what these functions return.

Paths. :func:`check_target` reads the *raw* request path (before
percent-decoding) and refuses, with a reason that is counted in a metric,
anything that could climb out of the library: a bad or NUL percent-escape,
control characters, backslashes, an encoded ``/`` (``..%2f``), ``.`` or
``..`` segments in any spelling (``%2e%2e``), empty segments (``//etc``),
hidden names, overlong paths. What is left is a list of plain segments that
the shell maps to one file *name* inside one video folder; it never joins a
user string into a path with more than one component.

Conditional GET and Range follow :mod:`seedcast.http11.semantics` (the edge
uses the same rules): 412/304 first, then a single satisfiable range gives
206 with Content-Range, an unsatisfiable one 416 with ``Content-Range: bytes
*/size``; several ranges, an unknown unit, a malformed header or HEAD give
the whole representation (200), which RFC 9110 allows.
"""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from seedcast.http11.semantics import Unsatisfiable, http_date, preconditions, range_answer
from seedcast.provenance import SERVED_BY

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
]

MAX_PATH_LENGTH = 1024
MAX_SEGMENTS = 8

ALLOW = "GET, HEAD, OPTIONS"
EXPOSED = f"Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, {SERVED_BY}"
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
    status = preconditions(method, get, etag, last_modified)
    if status is not None:
        return FileDecision(status, [*validators, *CORS_HEADERS])
    base = [
        ("Content-Type", content_type),
        *validators,
        ("Accept-Ranges", "bytes"),
        *CORS_HEADERS,
    ]
    answer = range_answer(method, get, etag, last_modified, facts.size)
    if isinstance(answer, Unsatisfiable):
        return FileDecision(416, [*base, ("Content-Range", answer.content_range())])
    if answer is not None:
        return FileDecision(
            206,
            [*base, ("Content-Range", answer.content_range())],
            offset=answer.start,
            length=answer.length,
        )
    return FileDecision(200, base, offset=0, length=facts.size)


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
