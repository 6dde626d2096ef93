"""`seedcast sample`, `seedcast publish` and `seedcast library` as real processes with ffmpeg.

The sample is short (8 s, 960x540) so the whole file runs in seconds on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lxml import etree
from seedcast.origin.encoder import find_ffmpeg, probe_file
from seedcast.origin.library import Library
from seedcast.peer.metainfo import Metainfo
from seedcast.testing.origin import (
    make_sample,
    publish_cli,
    seedcast_command,
    write_synthetic_video,
)

pytestmark = pytest.mark.slow

NS = {"mpd": "urn:mpeg:dash:schema:mpd:2011"}
ANNOUNCE = "http://127.0.30.1:6969/announce"


@pytest.fixture(scope="module")
def published(
    origin_sample: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    data_dir = tmp_path_factory.mktemp("published")
    result = publish_cli(origin_sample, data_dir, "sample", "--title", "The sample")
    return data_dir, result


def _tree(root: Path) -> dict[str, tuple[int, bytes | int]]:
    """Every file under root (but the lock file) with its size and content (or mtime)."""
    tree: dict[str, tuple[int, bytes | int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != ".lock":
            data = path.read_bytes()
            tree[str(path.relative_to(root))] = (
                len(data),
                data if len(data) < 100_000 else path.stat().st_mtime_ns,
            )
    return tree


def test_sample_is_what_it_says(origin_sample: Path) -> None:
    info = probe_file(find_ffmpeg(), origin_sample)
    assert info.video is not None
    assert info.audio is not None
    assert (info.video.codec, info.video.width, info.video.height, info.video.fps) == (
        "h264",
        960,
        540,
        30,
    )
    assert info.audio.codec == "aac"
    assert info.duration is not None
    assert abs(info.duration - 8.0) < 0.1


def test_publish_output_and_library_list(
    published: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    data_dir, result = published
    assert result.returncode == 0, result.stderr
    assert "published sample: 8.0 s, 540p 360p audio 128k, 4 segments x 2 s" in result.stdout
    listing = subprocess.run(
        seedcast_command("library", "list", data_dir=data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "sample" in listing.stdout
    assert "The sample" in listing.stdout
    assert "540p 360p audio 128k" in listing.stdout
    assert "4 x 2 s" in listing.stdout
    index = json.loads((data_dir / "library" / "index.json").read_text())
    entry = index["videos"]["sample"]
    assert entry["title"] == "The sample"
    assert entry["duration"] == 8.0
    assert entry["segment_count"] == 4
    assert entry["segment_seconds"] == 2.0
    assert [r["name"] for r in entry["renditions"]] == ["540p", "360p", "audio 128k"]
    assert entry["files"] == 1 + 3 * 5
    assert entry["bytes"] == sum(
        (data_dir / "library" / "sample" / name).stat().st_size
        for name in os.listdir(data_dir / "library" / "sample")
        if name.endswith((".m4s", ".mpd"))
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["created"])


def test_mpd_is_complete_and_aligned(
    published: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    data_dir, _ = published
    folder = data_dir / "library" / "sample"
    root = etree.parse(str(folder / "manifest.mpd")).getroot()
    assert root.get("type") == "static"
    assert root.get("mediaPresentationDuration") == "PT8.0S"
    assert root.xpath("string(mpd:ProgramInformation/mpd:Title)", namespaces=NS) == "The sample"
    sets = root.xpath("mpd:Period/mpd:AdaptationSet", namespaces=NS)
    assert [s.get("contentType") for s in sets] == ["video", "audio"]
    assert all(s.get("segmentAlignment") == "true" for s in sets)
    representations = root.xpath("//mpd:Representation", namespaces=NS)
    timings = set()
    expected = {
        "0": ("video/mp4", "960", "540", "1500000"),
        "1": ("video/mp4", "640", "360", "600000"),
        "2": ("audio/mp4", None, None, "128000"),
    }
    for representation in representations:
        rid = representation.get("id")
        mime, width, height, bandwidth = expected[rid]
        assert representation.get("mimeType") == mime
        assert representation.get("bandwidth") == bandwidth
        assert representation.get("width") == width
        assert representation.get("height") == height
        codecs = representation.get("codecs")
        assert codecs.startswith("avc1.64") if mime == "video/mp4" else codecs == "mp4a.40.2"
        if mime == "video/mp4":
            assert representation.get("frameRate") == "30/1"
        (template,) = representation.xpath("mpd:SegmentTemplate", namespaces=NS)
        assert "$Number" in template.get("media")
        timings.add(
            (template.get("timescale"), template.get("duration"), template.get("startNumber"))
        )
        timescale, duration = int(template.get("timescale")), int(template.get("duration"))
        count = -(-8 * timescale // duration)
        init = template.get("initialization").replace("$RepresentationID$", rid)
        assert (folder / init).stat().st_size > 0
        for number in range(1, count + 1):
            name = re.sub(r"\$Number%05d\$", f"{number:05d}", template.get("media"))
            assert (folder / name.replace("$RepresentationID$", rid)).stat().st_size > 0
        extra = re.sub(r"\$Number%05d\$", f"{count + 1:05d}", template.get("media"))
        assert not (folder / extra.replace("$RepresentationID$", rid)).exists()
    assert len(timings) == 1  # same segment duration, timescale and numbering everywhere
    assert timings == {("1000000", "2000000", "1")}


def _keyframe_times(ffmpeg: str, folder: Path, rid: str, version: str) -> list[float]:
    joined = folder.parent / f"joined-{rid}.mp4"
    with open(joined, "wb") as out:
        out.write((folder / f"init-{version}-{rid}.m4s").read_bytes())
        for number in range(1, 5):
            out.write((folder / f"chunk-{version}-{rid}-{number:05d}.m4s").read_bytes())
    result = subprocess.run(
        [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-skip_frame",
            "nokey",
            "-i",
            str(joined),
            "-vf",
            "showinfo",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    joined.unlink()
    return [round(float(value), 3) for value in re.findall(r"pts_time:\s*([\d.]+)", result.stderr)]


def test_keyframes_are_aligned_at_segment_boundaries(
    published: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    data_dir, _ = published
    folder = data_dir / "library" / "sample"
    version = json.loads((folder / "video.json").read_text())["version"]
    ffmpeg = find_ffmpeg()
    times = {rid: _keyframe_times(ffmpeg, folder, rid, version) for rid in ("0", "1")}
    # One keyframe per segment start, nothing else (no scene-cut keyframes), in both rungs.
    assert times["0"] == times["1"] == [0.0, 2.0, 4.0, 6.0]


def test_torrent_covers_mpd_and_every_segment(
    published: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    data_dir, _ = published
    folder = data_dir / "library" / "sample"
    metainfo = Metainfo.parse((folder / "sample.torrent").read_bytes())
    entry = json.loads((folder / "video.json").read_text())
    assert metainfo.name == "sample"
    assert metainfo.announce == ANNOUNCE
    assert metainfo.info_hash.hex() == entry["info_hash"]
    assert 16 * 1024 <= metainfo.piece_length <= 1024 * 1024
    assert metainfo.piece_length & (metainfo.piece_length - 1) == 0
    real = [str(metainfo.relative_path(file)).split("/", 1)[1] for file in metainfo.real_files]
    on_disk = sorted(name for name in os.listdir(folder) if name.endswith((".m4s", ".mpd")))
    assert real[0] == "manifest.mpd"
    assert sorted(real) == on_disk
    for file in metainfo.real_files:
        assert file.offset % metainfo.piece_length == 0  # BEP 47: each file starts a piece


def test_video_only_small_source(tmp_path: Path) -> None:
    source = make_sample(tmp_path / "small.mp4", seconds=3, size="320x180", audio=False)
    result = publish_cli(source, tmp_path / "data", "small", "--segment-seconds", "1")
    assert result.returncode == 0, result.stderr
    entry = Library(tmp_path / "data" / "library").read_index().videos["small"]
    assert [(r.kind, r.width, r.height) for r in entry.renditions] == [("video", 320, 180)]
    assert entry.segment_count == 3
    assert entry.segment_seconds == 1.0
    text = (tmp_path / "data" / "library" / "small" / "manifest.mpd").read_text()
    assert 'contentType="audio"' not in text


@pytest.fixture(scope="module")
def bad_inputs(origin_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-inputs")
    data = origin_sample.read_bytes()
    ffmpeg = find_ffmpeg()
    inputs = {
        "text": folder / "notes.mp4",
        "garbage": folder / "garbage.mp4",
        "truncated": folder / "truncated.mp4",
        "headless": folder / "headless.mp4",
        "empty": folder / "empty.mp4",
        "audio-only": folder / "audio.m4a",
        "image": folder / "image.png",
        "folder": folder / "a-folder",
    }
    inputs["text"].write_text("this is not a video\n")
    inputs["garbage"].write_bytes(bytes(range(256)) * 500)
    inputs["truncated"].write_bytes(data[: len(data) * 4 // 10])  # index intact, media cut short
    inputs["headless"].write_bytes(data[len(data) // 3 :])  # no header, no index
    inputs["empty"].write_bytes(b"")
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-i",
            str(origin_sample),
            "-vn",
            "-c",
            "copy",
            str(inputs["audio-only"]),
        ],
        check=True,
        timeout=60,
    )
    subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(origin_sample), "-frames:v", "1", str(inputs["image"])],
        check=True,
        timeout=60,
    )
    inputs["folder"].mkdir()
    inputs["missing"] = folder / "missing.mp4"
    return inputs


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file"),
        ("folder", "is a directory"),
        ("empty", r"empty file \(0 bytes\)"),
        ("text", "not a media file|not a readable MP4"),
        ("garbage", "not a media file|not a readable MP4"),
        ("headless", "not a media file|not a readable MP4"),
        ("truncated", "truncated or corrupt"),
        ("audio-only", r"not a video \(audio only\)"),
        ("image", "still image"),
    ],
)
def test_bad_input_is_one_line_and_library_unchanged(
    kind: str, message: str, bad_inputs: dict[str, Path], tmp_path: Path
) -> None:
    library = Library(tmp_path / "data" / "library")
    write_synthetic_video(library, "movie")
    before = _tree(library.root)
    result = publish_cli(bad_inputs[kind], tmp_path / "data", "movie")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("seedcast publish: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert _tree(library.root) == before


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found


def _wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition on the outside world (files, processes) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def long_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample(
        tmp_path_factory.getbasetemp() / "origin-media" / "sample-16s.mp4",
        seconds=16,
        size="960x540",
    )


def _start_publish_and_wait_midway(
    source: Path, data_dir: Path
) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        seedcast_command(
            "publish", str(source), "--id", "movie", "--preset", "medium", data_dir=data_dir
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    root = data_dir / "library"

    def partial_has_a_segment() -> bool:
        assert process.poll() is None, process.communicate()
        return any(
            name.startswith("chunk-")
            for folder in root.glob(".partial-movie-*")
            for name in os.listdir(folder)
        )

    _wait_for(partial_has_a_segment)
    (partial,) = root.glob(".partial-movie-*")
    return process, partial


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_publish_leaves_no_trace(
    signum: int, long_sample: Path, tmp_path: Path
) -> None:
    library = Library(tmp_path / "data" / "library")
    write_synthetic_video(library, "movie")
    before = _tree(library.root)
    names_before = sorted(os.listdir(library.root))
    process, partial = _start_publish_and_wait_midway(long_sample, tmp_path / "data")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "seedcast publish: interrupted"
    assert not partial.exists()
    assert sorted(os.listdir(library.root)) == names_before
    assert _tree(library.root) == before
    assert _processes_mentioning(str(partial)) == []  # ffmpeg was stopped too


def test_killed_publish_is_swept_and_leaves_the_library_as_it_was(
    long_sample: Path, tmp_path: Path
) -> None:
    library = Library(tmp_path / "data" / "library")
    write_synthetic_video(library, "movie")
    before = _tree(library.root)
    process, partial = _start_publish_and_wait_midway(long_sample, tmp_path / "data")
    process.kill()
    process.communicate(timeout=30)
    # The encoder dies with its parent (parent-death signal), it does not keep writing.
    _wait_for(lambda: _processes_mentioning(str(partial)) == [], timeout=30)
    assert library.read_index().videos["movie"].title == "Synthetic movie"
    listing = subprocess.run(
        seedcast_command("library", "list", data_dir=tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "movie" in listing.stdout
    assert not partial.exists()
    assert _tree(library.root) == before
    shutil.rmtree(tmp_path / "data")
