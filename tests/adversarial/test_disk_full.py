"""A full disk during publish: the library stays consistent, the message says "disk full"."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from adversary import fill
from seedcast.errors import MediaError
from seedcast.origin.library import Library, Rendition, VideoEntry


def _entry(video_id: str, version: str) -> VideoEntry:
    return VideoEntry(
        id=video_id,
        title="t",
        duration=2.0,
        segment_seconds=2.0,
        segment_count=1,
        renditions=(Rendition("0", "video", "360p", "video/mp4", "avc1.64001e", 500000, 640, 360),),
        bytes=300,
        files=2,
        created="2026-01-01T00:00:00Z",
        version=version,
        torrent=f"{video_id}.torrent",
        info_hash="00" * 20,
    )


def _write(folder: Path, content: bytes) -> None:
    (folder / "manifest.mpd").write_bytes(content)
    (folder / "segment-1.m4s").write_bytes(content * 100)


def _leftovers(library: Library) -> list[str]:
    return sorted(
        p.name for p in library.root.iterdir() if p.name.startswith(".") and p.name != ".lock"
    )


@pytest.mark.parametrize("leave", [0, 4096])
def test_republish_on_a_full_disk_changes_nothing(
    small_tmpfs: Callable[[str], Path], leave: int
) -> None:
    # leave=0: not even the entry file fits; 4096: the entry fits, the staged index doesn't
    # (the old order moved the new folder in first and then failed on the index).
    root = small_tmpfs("1m")
    library = Library(root / "library")
    with library.publishing("movie") as partial:
        _write(partial.path, b"old")
        partial.commit(_entry("movie", "old"))
    with library.publishing("movie") as partial:
        _write(partial.path, b"new")
        filler = fill(root, leave=leave)
        with pytest.raises(MediaError, match="disk full"):
            partial.commit(_entry("movie", "new"))
    assert (library.root / "movie" / "manifest.mpd").read_bytes() == b"old"
    assert (library.root / "movie" / "segment-1.m4s").read_bytes() == b"old" * 100
    assert library.read_index().videos["movie"].version == "old"
    stored = json.loads((library.root / "movie" / "video.json").read_text())
    assert stored["version"] == "old"
    assert _leftovers(library) == []  # no .old-, no .partial-, no staged index
    filler.unlink()
    with library.publishing("movie") as partial:  # space again: it just works
        _write(partial.path, b"new")
        partial.commit(_entry("movie", "new"))
    assert (library.root / "movie" / "manifest.mpd").read_bytes() == b"new"
    assert library.read_index().videos["movie"].version == "new"
    assert _leftovers(library) == []


def test_a_killed_commit_leaves_nothing_behind_after_repair(
    small_tmpfs: Callable[[str], Path],
) -> None:
    root = small_tmpfs("1m")
    library = Library(root / "library")
    with library.publishing("movie") as partial:
        _write(partial.path, b"old")
        partial.commit(_entry("movie", "old"))
    # What a SIGKILL between staging the index and switching leaves: a staged index of a
    # dead process, and a replaced version moved aside.
    (library.root / ".index.json.tmp-999999-abcd").write_bytes(b"{}")
    (library.root / "movie").rename(library.root / ".old-movie-abcd")
    actions = library.repair()
    assert "removed unfinished write .index.json.tmp-999999-abcd" in actions
    assert (library.root / "movie" / "manifest.mpd").read_bytes() == b"old"
    assert _leftovers(library) == []
