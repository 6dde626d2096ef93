"""`seedcast torrent create|show` through the real CLI entry point (in process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from seedcast.cli import main
from seedcast.peer.metainfo import Metainfo


def test_create_and_show_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "movie"
    (folder / "720p").mkdir(parents=True)
    (folder / "720p" / "1.m4s").write_bytes(b"a" * 50_000)
    (folder / "manifest.mpd").write_bytes(b"<MPD/>")
    assert main(["torrent", "create", str(folder)]) == 0
    created = capsys.readouterr().out
    assert "wrote movie.torrent" in created
    meta = Metainfo.parse((tmp_path / "movie.torrent").read_bytes())
    assert meta.announce == "http://127.0.30.1:6969/announce"  # the cluster's tracker
    assert [entry.path for entry in meta.real_files] == [("720p", "1.m4s"), ("manifest.mpd",)]
    assert any(entry.padding for entry in meta.files)

    assert main(["torrent", "show", "movie.torrent"]) == 0
    shown = capsys.readouterr().out
    for expected in (
        meta.info_hash.hex(),
        "movie/720p/1.m4s",
        "movie/manifest.mpd",
        "pad",
        "16.0 KiB",
    ):
        assert expected in shown


def test_create_a_single_file_with_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"v" * 100_000)
    out = tmp_path / "out.torrent"
    code = main(
        [
            "torrent",
            "create",
            str(source),
            "--announce",
            "udp://127.0.0.1:1",
            "--out",
            str(out),
            "--piece-length",
            "32KiB",
        ]
    )
    assert code == 0
    meta = Metainfo.parse(out.read_bytes())
    assert meta.single_file
    assert meta.piece_length == 32 * 1024
    assert meta.announce == "udp://127.0.0.1:1"
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["torrent", "show", "{tmp}/missing.torrent"], 2, "no such file"),
        (["torrent", "show", "{tmp}/garbage.torrent"], 1, "bad torrent"),
        (["torrent", "create", "{tmp}/nothing-here"], 2, "no such file"),
        (
            ["torrent", "create", "{tmp}/garbage.torrent", "--piece-length", "3000"],
            2,
            "power of two",
        ),
        (
            ["torrent", "create", "{tmp}/garbage.torrent", "--piece-length", "huge"],
            2,
            "piece-length",
        ),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, fragment: str
) -> None:
    (tmp_path / "garbage.torrent").write_bytes(b"d4:infoi1ee")
    assert main([part.format(tmp=tmp_path) for part in argv]) == code
    error = capsys.readouterr().err
    assert fragment in error
    assert error.count("\n") == 1
