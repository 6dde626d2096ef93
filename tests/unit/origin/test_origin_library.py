"""Library: atomic publish, replace, rename (aliases), remove, repair; and the Catalog on top."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from seedcast.errors import MediaError, UsageError
from seedcast.origin.catalog import Catalog
from seedcast.origin.library import Library, Rendition, VideoEntry, check_video_id


def _entry(video_id: str, *, title: str = "t", version: str = "abcd1234") -> VideoEntry:
    return VideoEntry(
        id=video_id,
        title=title,
        duration=10.0,
        segment_seconds=2.0,
        segment_count=5,
        renditions=(
            Rendition(
                "0", "video", "540p", "video/mp4", "avc1.64001f", 1500000, 960, 540, "30/1", 10
            ),
            Rendition("1", "audio", "audio 128k", "audio/mp4", "mp4a.40.2", 128000, bytes=5),
        ),
        bytes=15,
        files=13,
        created="2026-01-01T00:00:00Z",
        version=version,
        torrent=f"{video_id}.torrent",
        info_hash="00" * 20,
    )


def _publish(library: Library, video_id: str, content: bytes = b"one", **kwargs: str) -> None:
    with library.publishing(video_id) as partial:
        (partial.path / "manifest.mpd").write_bytes(content)
        partial.commit(_entry(video_id, **kwargs))


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def test_publish_commits_atomically(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "movie")
    assert (library.root / "movie" / "manifest.mpd").read_bytes() == b"one"
    assert json.loads((library.root / "movie" / "video.json").read_text())["id"] == "movie"
    index = library.read_index()
    assert list(index.videos) == ["movie"]
    assert [entry.id for entry in library.entries()] == ["movie"]
    assert not [p for p in library.root.iterdir() if p.name.startswith(".partial-")]


def test_failure_before_commit_leaves_library_unchanged(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "movie")
    before = _tree(library.root)

    def fail(video_id: str, error: BaseException) -> None:
        with library.publishing(video_id) as partial:
            (partial.path / "manifest.mpd").write_bytes(b"two")
            raise error

    with pytest.raises(RuntimeError):
        fail("movie", RuntimeError("encoder died"))
    with pytest.raises(KeyboardInterrupt):
        fail("other", KeyboardInterrupt())
    assert _tree(library.root) == before


def test_replace_only_when_complete(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "movie", b"one", title="first")
    _publish(library, "movie", b"two", title="second")
    assert (library.root / "movie" / "manifest.mpd").read_bytes() == b"two"
    assert library.read_index().videos["movie"].title == "second"
    assert sorted(p.name for p in library.root.iterdir()) == [".lock", "index.json", "movie"]


def test_repair_sweeps_dead_partials_and_restores_interrupted_replace(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "movie")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    stale = library.root / f".partial-movie-{dead_pid}-deadbeef"
    stale.mkdir()
    (stale / "chunk.m4s").write_bytes(b"half")
    live = library.root / f".partial-movie-{os.getpid()}-cafe0000"
    live.mkdir()
    # A replace killed between its two renames: the old version is aside, nothing in place.
    os.rename(library.root / "movie", library.root / ".old-movie-12345678")
    actions = library.repair()
    assert any("removed unfinished publish" in action for action in actions)
    assert any("restored movie" in action for action in actions)
    assert not stale.exists()
    assert live.exists()  # still running (it is us)
    assert (library.root / "movie" / "manifest.mpd").read_bytes() == b"one"
    assert library.repair() == []


def test_repair_rebuilds_index_from_folders(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "a")
    _publish(library, "b")
    library.index_path.unlink()
    assert any("rebuilt" in action for action in library.repair())
    assert sorted(library.read_index().videos) == ["a", "b"]


def test_corrupt_index_is_one_line(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    library.root.mkdir(parents=True)
    library.index_path.write_text("{not json")
    with pytest.raises(MediaError, match="corrupt library index") as caught:
        library.read_index()
    assert "\n" not in str(caught.value)


def test_rename_keeps_an_alias(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "old")
    calls: list[tuple[Path, str]] = []

    def retorrent(folder: Path, new_id: str) -> tuple[str, str]:
        calls.append((folder, new_id))
        (folder / f"{new_id}.torrent").write_bytes(b"t")
        return f"{new_id}.torrent", "11" * 20

    entry = library.rename("old", "new", retorrent=retorrent)
    assert entry.id == "new"
    assert entry.torrent == "new.torrent"
    assert entry.info_hash == "11" * 20
    assert calls == [(library.root / "old", "new")]
    assert (library.root / "new" / "manifest.mpd").exists()
    assert not (library.root / "old").exists()
    index = library.read_index()
    assert index.aliases == {"old": "new"}
    assert index.resolve_alias("old") == "new"
    library.rename("new", "newer")
    index = library.read_index()
    assert index.aliases == {"old": "newer", "new": "newer"}
    # Publishing under an aliased id takes the id back.
    _publish(library, "old")
    assert library.read_index().aliases == {"new": "newer"}
    with pytest.raises(UsageError):
        library.rename("missing", "x")
    with pytest.raises(UsageError):
        library.rename("old", "newer")


def test_remove(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "a")
    library.rename("a", "b")
    library.remove("b")
    index = library.read_index()
    assert index.videos == {}
    assert index.aliases == {}
    assert not (library.root / "b").exists()
    with pytest.raises(UsageError):
        library.remove("b")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".hidden",
        "a/b",
        "..",
        "a..b",
        "x" * 65,
        "catalog",
        "watch",
        "static",
        "healthz",
        "metrics",
        "name.",
        "-x",
        "a b",
        "é",
    ],
)
def test_bad_ids(bad: str) -> None:
    with pytest.raises(UsageError):
        check_video_id(bad)


def test_good_ids() -> None:
    for good in ("sample", "Movie_2.v1", "a", "big-buck-bunny"):
        assert check_video_id(good) == good


# --- catalog -------------------------------------------------------------------------------


def test_catalog_serves_only_published_names(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "movie")
    library.rename("movie", "film", retorrent=lambda folder, new_id: (f"{new_id}.torrent", ""))
    catalog = Catalog(library.read_index())
    assert catalog.video("film") is not None
    assert catalog.video("movie") is None
    assert catalog.renamed_to("movie") == "film"
    assert catalog.renamed_to("film") is None
    assert catalog.renamed_to("nothing") is None
    served = {
        name: catalog.served_file("film", name)
        for name in (
            "manifest.mpd",
            "film.torrent",
            "init-abcd1234-0.m4s",
            "init-abcd1234-1.m4s",
            "chunk-abcd1234-0-00001.m4s",
            "chunk-abcd1234-1-00005.m4s",
        )
    }
    kinds = {name: (item.content_type, item.immutable) for name, item in served.items() if item}
    assert kinds == {
        "manifest.mpd": ("application/dash+xml", False),
        "film.torrent": ("application/x-bittorrent", False),
        "init-abcd1234-0.m4s": ("video/mp4", True),
        "init-abcd1234-1.m4s": ("audio/mp4", True),
        "chunk-abcd1234-0-00001.m4s": ("video/mp4", True),
        "chunk-abcd1234-1-00005.m4s": ("audio/mp4", True),
    }
    for name in (
        "video.json",
        "index.json",
        "movie.torrent",
        "init-ffff0000-0.m4s",  # another publish's version
        "init-abcd1234-7.m4s",  # no such representation
        "init-abcd1234-00.m4s",
        "chunk-abcd1234-0-00006.m4s",  # past the end
        "chunk-abcd1234-0-00000.m4s",
        "manifest.mpd.bak",
    ):
        assert catalog.served_file("film", name) is None, name
    assert catalog.served_file("movie", "manifest.mpd") is None


def test_catalog_json(tmp_path: Path) -> None:
    library = Library(tmp_path / "library")
    _publish(library, "movie", title="My <movie>")
    body = Catalog(library.read_index()).to_json()
    (video,) = body["videos"]
    assert video["id"] == "movie"
    assert video["title"] == "My <movie>"
    assert video["manifest"] == "/movie/manifest.mpd"
    assert video["torrent"] == "/movie/movie.torrent"
    assert video["renditions"][0]["width"] == 960
    assert "width" not in video["renditions"][1]
    assert Catalog.empty().to_json() == {"videos": [], "aliases": {}}
