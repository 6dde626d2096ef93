"""The origin's pure HTTP decisions: hostile paths, validators, conditionals, ranges, cookies."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seedcast.origin.serving import (
    FileDecision,
    FileFacts,
    PathRefused,
    ViewerTracker,
    check_target,
    check_target_slowly,
    decide_file,
    etag_for,
    viewer_cookie,
    viewer_from_cookies,
)

# --- paths ---------------------------------------------------------------------------------

HOSTILE_PATHS = [
    ("/../etc/passwd", PathRefused.DOT_SEGMENT),
    ("/sample/../../etc/passwd", PathRefused.DOT_SEGMENT),
    ("/sample/./manifest.mpd", PathRefused.DOT_SEGMENT),
    ("/%2e%2e/etc/passwd", PathRefused.DOT_SEGMENT),
    ("/%2E%2E/%2E%2E/etc/passwd", PathRefused.DOT_SEGMENT),
    ("/.%2e/secret", PathRefused.DOT_SEGMENT),
    ("/sample/%2e", PathRefused.DOT_SEGMENT),
    ("/..%2fetc%2fpasswd", PathRefused.ENCODED_SLASH),
    ("/sample/..%2F..%2Fsecret", PathRefused.ENCODED_SLASH),
    ("/%2fetc%2fpasswd", PathRefused.ENCODED_SLASH),
    ("/sample%2fmanifest.mpd", PathRefused.ENCODED_SLASH),
    ("//etc/passwd", PathRefused.EMPTY_SEGMENT),
    ("/sample//manifest.mpd", PathRefused.EMPTY_SEGMENT),
    ("/..\\..\\etc\\passwd", PathRefused.BACKSLASH),
    ("/sample\\..\\secret", PathRefused.BACKSLASH),
    ("/sample/%5c..%5csecret", PathRefused.BACKSLASH),
    ("/C:\\Windows\\win.ini", PathRefused.BACKSLASH),
    ("/sample/manifest.mpd%00.m4s", PathRefused.NUL),
    ("/sample%00/x", PathRefused.NUL),
    ("/sample/%0aSet-Cookie:x", PathRefused.CONTROL),
    ("/sample/%7f", PathRefused.CONTROL),
    ("/sample/%c2%85", PathRefused.CONTROL),
    ("/sample/%zz", PathRefused.BAD_ESCAPE),
    ("/sample/%2", PathRefused.BAD_ESCAPE),
    ("/sample/100%", PathRefused.BAD_ESCAPE),
    ("/%c0%ae%c0%ae/etc/passwd", PathRefused.NOT_UTF8),  # overlong UTF-8 dots
    ("/%ff%fe", PathRefused.NOT_UTF8),
    ("/.partial-sample-1-ab/manifest.mpd", PathRefused.HIDDEN),
    ("/sample/.video.json.tmp", PathRefused.HIDDEN),
    ("/.git/config", PathRefused.HIDDEN),
    ("/%2egit/config", PathRefused.HIDDEN),
    ("etc/passwd", PathRefused.NOT_ABSOLUTE),
    ("*", PathRefused.NOT_ABSOLUTE),
    ("/" + "a/" * 20, PathRefused.TOO_LONG),
    ("/" + "a" * 2000, PathRefused.TOO_LONG),
]


@pytest.mark.parametrize(("path", "reason"), HOSTILE_PATHS)
def test_hostile_paths_are_refused(path: str, reason: PathRefused) -> None:
    check = check_target(path)
    assert not check.ok
    assert check.refused is reason
    assert check.refused.status in (400, 404)


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/", ()),
        ("/catalog", ("catalog",)),
        ("/sample/manifest.mpd", ("sample", "manifest.mpd")),
        ("/sample/chunk-ab12-0-00001.m4s", ("sample", "chunk-ab12-0-00001.m4s")),
        ("/my%20video/manifest.mpd", ("my video", "manifest.mpd")),
        ("/caf%C3%A9/x", ("café", "x")),
        ("/watch/sample/", ("watch", "sample")),
        ("/a..b/c...d", ("a..b", "c...d")),
    ],
)
def test_plain_paths(path: str, segments: tuple[str, ...]) -> None:
    check = check_target(path)
    assert check.ok
    assert check.segments == segments


_PIECES = [
    "..",
    ".",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "/",
    "%00",
    "%",
    "a",
    "sample",
    "manifest.mpd",
    "%c0%ae",
    "%25",
    "~",
    ":",
    "etc",
    "passwd",
    "//",
]


@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12))
def test_traversal_mixtures_never_yield_unsafe_segments(pieces: list[str]) -> None:
    check = check_target("/" + "".join(pieces))
    if check.ok:
        for segment in check.segments:
            assert segment not in ("", ".", "..")
            assert "/" not in segment
            assert "\\" not in segment
            assert "\0" not in segment
            assert not segment.startswith(".")


@given(
    st.lists(
        st.text(alphabet="abcXYZ019_.~-%/\\", min_size=0, max_size=12), min_size=1, max_size=10
    ),
    st.booleans(),
)
def test_fast_path_agrees_with_full_decoding(segments: list[str], trailing: bool) -> None:
    path = "/" + "/".join(segments) + ("/" if trailing else "")
    assert check_target(path) == check_target_slowly(path)


@given(st.text(max_size=300))
def test_any_text_is_refused_or_safe(text: str) -> None:
    check = check_target(text)
    if check.ok:
        for segment in check.segments:
            assert segment not in ("", ".", "..")
            assert "/" not in segment
            assert "\\" not in segment
            assert all(ord(char) >= 0x20 and ord(char) != 0x7F for char in segment)
    else:
        assert check.refused is not None
        assert check.refused.status in (400, 404)


# --- dates and validators ------------------------------------------------------------------

FACTS = FileFacts(size=1000, mtime=1_700_000_000.5, inode=42, mtime_ns=1_700_000_000_500_000_000)
MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"


def test_etag_is_strong_and_changes_with_the_file() -> None:
    tag = etag_for(FACTS)
    assert tag.startswith('"')
    assert tag.endswith('"')
    assert not tag.startswith("W/")
    assert etag_for(FileFacts(1000, FACTS.mtime, 43, FACTS.mtime_ns)) != tag
    assert etag_for(FileFacts(1001, FACTS.mtime, 42, FACTS.mtime_ns)) != tag
    assert etag_for(FileFacts(1000, FACTS.mtime, 42, FACTS.mtime_ns + 1)) != tag


def _decide(method: str = "GET", facts: FileFacts = FACTS, **headers: str) -> FileDecision:
    request_headers = {name.replace("_", "-"): value for name, value in headers.items()}
    return decide_file(
        method,
        request_headers,
        facts,
        content_type="video/mp4",
        cache_control="public, max-age=31536000, immutable",
    )


def _header(decision, name: str) -> str | None:  # type: ignore[no-untyped-def]
    for key, value in decision.headers:
        if key.lower() == name.lower():
            return str(value)
    return None


def test_plain_get() -> None:
    decision = _decide()
    assert (decision.status, decision.offset, decision.length) == (200, 0, 1000)
    assert _header(decision, "content-type") == "video/mp4"
    assert _header(decision, "etag") == etag_for(FACTS)
    assert _header(decision, "last-modified") == MODIFIED
    assert _header(decision, "cache-control") == "public, max-age=31536000, immutable"
    assert _header(decision, "accept-ranges") == "bytes"
    assert _header(decision, "access-control-allow-origin") == "*"


def test_if_none_match() -> None:
    tag = etag_for(FACTS)
    assert _decide(if_none_match=tag).status == 304
    assert _decide(if_none_match=f'"nope", {tag}').status == 304
    assert _decide(if_none_match=f"W/{tag}").status == 304  # weak comparison
    assert _decide(if_none_match="*").status == 304
    assert _decide(if_none_match='"other"').status == 200
    not_modified = _decide("HEAD", if_none_match=tag)
    assert not_modified.status == 304
    assert not not_modified.has_body
    assert _header(not_modified, "etag") == tag


def test_if_modified_since() -> None:
    assert _decide(if_modified_since=MODIFIED).status == 304
    assert _decide(if_modified_since="Wed, 15 Nov 2023 00:00:00 GMT").status == 304
    assert _decide(if_modified_since="Mon, 13 Nov 2023 00:00:00 GMT").status == 200
    assert _decide(if_modified_since="garbage").status == 200
    # If-None-Match wins over If-Modified-Since
    assert _decide(if_none_match='"other"', if_modified_since=MODIFIED).status == 200


def test_if_match_and_if_unmodified_since() -> None:
    tag = etag_for(FACTS)
    assert _decide(if_match='"other"').status == 412
    assert _decide(if_match=f"W/{tag}").status == 412  # strong comparison
    assert _decide(if_match=tag).status == 200
    assert _decide(if_match="*").status == 200
    assert _decide(if_unmodified_since="Mon, 13 Nov 2023 00:00:00 GMT").status == 412
    assert _decide(if_unmodified_since=MODIFIED).status == 200


@pytest.mark.parametrize(
    ("header", "status", "first", "length", "content_range"),
    [
        ("bytes=0-99", 206, 0, 100, "bytes 0-99/1000"),
        ("bytes=900-", 206, 900, 100, "bytes 900-999/1000"),
        ("bytes=-100", 206, 900, 100, "bytes 900-999/1000"),
        ("bytes=-5000", 206, 0, 1000, "bytes 0-999/1000"),
        ("bytes=500-5000", 206, 500, 500, "bytes 500-999/1000"),
        ("bytes=999-999", 206, 999, 1, "bytes 999-999/1000"),
        (" bytes = 10 - 19 ", 206, 10, 10, "bytes 10-19/1000"),
        ("bytes=1000-", 416, 0, 0, "bytes */1000"),
        ("bytes=5000-6000", 416, 0, 0, "bytes */1000"),
        ("bytes=-0", 416, 0, 0, "bytes */1000"),
        ("bytes=0-1,5-6", 200, 0, 1000, None),  # several ranges: whole body
        ("bytes=5-1", 200, 0, 1000, None),  # invalid: ignored
        ("bytes=abc", 200, 0, 1000, None),
        ("bytes=", 200, 0, 1000, None),
        ("bytes=-", 200, 0, 1000, None),
        ("items=0-5", 200, 0, 1000, None),
        ("0-5", 200, 0, 1000, None),
    ],
)
def test_ranges(
    header: str, status: int, first: int, length: int, content_range: str | None
) -> None:
    decision = _decide(range=header)
    assert decision.status == status
    if decision.has_body:
        assert (decision.offset, decision.length) == (first, length)
    assert _header(decision, "content-range") == content_range


def test_range_ignored_for_head_and_guarded_by_if_range() -> None:
    assert _decide("HEAD", range="bytes=0-9").status == 200
    tag = etag_for(FACTS)
    assert _decide(range="bytes=0-9", if_range=tag).status == 206
    assert _decide(range="bytes=0-9", if_range='"old"').status == 200
    assert _decide(range="bytes=0-9", if_range=f"W/{tag}").status == 200
    assert _decide(range="bytes=0-9", if_range=MODIFIED).status == 206
    assert _decide(range="bytes=0-9", if_range="Mon, 13 Nov 2023 00:00:00 GMT").status == 200


def test_empty_file_ranges() -> None:
    empty = FileFacts(size=0, mtime=FACTS.mtime, inode=1)
    assert _decide(range="bytes=0-", facts=empty).status == 416
    assert _decide(range="bytes=-5", facts=empty).status == 416
    assert _decide(facts=empty).status == 200


def test_huge_numbers_are_read_exactly() -> None:
    assert _decide(range="bytes=0-" + "9" * 40).length == FACTS.size
    assert _decide(range="bytes=0-" + "9" * 40).status == 206
    assert _decide(range="bytes=" + "9" * 40 + "-").status == 416
    assert _decide(range="bytes=" + "9" * 5000 + "-").status == 200  # too long: ignored


@given(st.text(max_size=80))
def test_any_range_header(header: str) -> None:
    decision = _decide(range=header)
    assert decision.status in (200, 206, 416)
    if decision.status == 206:
        assert 0 <= decision.offset < decision.offset + decision.length <= FACTS.size


# --- viewers -------------------------------------------------------------------------------


def test_viewer_cookies() -> None:
    tracker = ViewerTracker(random.Random(1))
    viewer, new = tracker.observe([])
    assert new
    assert len(viewer) == 32
    cookie = viewer_cookie(viewer)
    assert cookie.startswith(f"seedcast_viewer={viewer}; Path=/;")
    again, new_again = tracker.observe([f"theme=dark; seedcast_viewer={viewer}"])
    assert (again, new_again) == (viewer, False)
    assert tracker.unique == 1
    assert tracker.issued == 1
    tracker.note(["seedcast_viewer=" + "0" * 32])
    assert tracker.unique == 2
    tracker.note(["seedcast_viewer=../../etc"])  # malformed: not counted
    assert tracker.unique == 2
    _, forged_new = tracker.observe(["seedcast_viewer=XYZ"])
    assert forged_new
    assert tracker.unique == 3


def test_viewer_tracker_memory_is_bounded() -> None:
    tracker = ViewerTracker(random.Random(2), capacity=10)
    for number in range(25):
        tracker.note([f"seedcast_viewer={number:032x}"])
    assert tracker.unique == 25
    assert len(tracker._seen) == 10


@given(st.lists(st.text(max_size=100), max_size=5))
def test_any_cookie_header(headers: list[str]) -> None:
    viewer = viewer_from_cookies(headers)
    assert viewer is None or len(viewer) == 32
