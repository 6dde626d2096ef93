"""Segment names: which URL is "segment N+1" of the same representation.

How it works: a DASH media segment's file name carries its number as the last
run of digits (``chunk-720p-00042.m4s`` -> 42, from the origin's
``chunk-$RepresentationID$-$Number%05d$.m4s`` template); the next segment is
the same name with that number plus one, zero-padded to the same width. Init
segments, manifests and anything that isn't a media segment have no successor.
"""

from __future__ import annotations

import re

MEDIA_SUFFIXES = (".m4s", ".mp4", ".m4v", ".m4a", ".ts", ".webm", ".cmfv", ".cmfa")
_LAST_NUMBER = re.compile(r"(\d{1,12})\D*$")


def next_segment_target(target: str) -> str | None:
    """``/v/chunk-1-00042.m4s`` -> ``/v/chunk-1-00043.m4s``; None when not a media segment.

    ``target`` is an origin-form request target; a query string is kept.
    """
    path, sep, query = target.partition("?")
    directory, slash, name = path.rpartition("/")
    if not slash or not name.lower().endswith(MEDIA_SUFFIXES) or name.lower().startswith("init"):
        return None
    stem = name[: name.rfind(".")]
    match = _LAST_NUMBER.search(stem)
    if match is None:
        return None
    digits = match.group(1)
    following = str(int(digits) + 1).zfill(len(digits))
    next_name = stem[: match.start(1)] + following + stem[match.end(1) :] + name[len(stem) :]
    return f"{directory}/{next_name}{sep}{query}"
