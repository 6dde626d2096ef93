"""Every mistake a user makes gets one line saying what and what to do, and exit 1 (usage: 2).

One small cluster (its own 127.0.24x addresses) serves the mistakes that need
one; the rest run with nothing started.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cluster import cluster, cluster_file, seedcast

pytestmark = pytest.mark.slow
BLOCK = 240
EDGE = f"127.0.{BLOCK + 2}.1:18080"
DNS = f"127.0.{BLOCK + 3}.1:15353"


def one_line(completed: subprocess.CompletedProcess[str], code: int = 1) -> str:
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == code, completed.stderr
    assert len(lines) == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    return lines[0]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, tiny_library: Path) -> Iterator[Path]:
    tmp_path = tmp_path_factory.mktemp("mistakes")
    config_file = cluster_file(tmp_path, tiny_library, BLOCK, viewers=0)
    with cluster(config_file):
        seedcast("--config", str(config_file), "up", "--detach")
        yield config_file


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_cluster import publish_tiny_library

    data_dir = tmp_path_factory.mktemp("library")
    publish_tiny_library(data_dir)
    return data_dir


def play(config_file: Path | None, *arguments: str) -> subprocess.CompletedProcess[str]:
    prefix = ("--config", str(config_file)) if config_file else ()
    return seedcast(*prefix, "play", "--seconds", "1", *arguments, check=False, timeout=60)


def test_up_twice(running: Path) -> None:
    line = one_line(seedcast("--config", str(running), "up", "--detach", check=False))
    assert line.startswith("seedcast up: error:")
    assert "running" in line


def test_unknown_video_id_names_the_url_once(running: Path) -> None:
    url = f"http://{EDGE}/nope/manifest.mpd"
    line = one_line(play(running, url))
    assert line.count(url) == 1
    assert "404" in line
    assert "seedcast library list" in line


def test_unresolvable_host(running: Path) -> None:
    line = one_line(play(running, "http://nope.netcinema.test/sample/manifest.mpd"))
    assert "nope.netcinema.test" in line
    assert "NXDOMAIN" in line


def test_name_plays_without_a_port(running: Path) -> None:
    """The HTTPS record gives the edge's port (18080 here): the README's URL form works."""
    completed = play(running, "--json", "http://video.netcinema.test/sample/manifest.mpd")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["error"] is None
    assert report["bytes_from_edges"] > 0
    assert set(report["served_by"]) <= {"edge-1", "edge-2"}


def test_port_taken_by_another_program(tmp_path: Path, tiny_library: Path) -> None:
    config_file = cluster_file(tmp_path, tiny_library, BLOCK - 10, viewers=0)
    origin = ("127.0.231.1", 18080)  # the origin's listen address in that block
    with socket.socket() as squatter:
        squatter.bind(origin)
        squatter.listen()
        with cluster(config_file):
            completed = seedcast("--config", str(config_file), "up", "--detach", check=False)
    line = one_line(completed)
    assert "127.0.231.1:18080" in line
    assert "in use" in line


def test_play_not_a_url() -> None:
    line = one_line(play(None, "not-a-url"), code=2)
    assert "not-a-url" in line
    assert "http://HOST" in line


def test_nobody_listening() -> None:
    line = one_line(play(None, "http://127.0.0.1:1/sample/manifest.mpd"))
    assert "connection refused" in line
    assert "seedcast status" in line


def test_play_json_prints_the_object_with_its_error() -> None:
    completed = play(None, "--json", "http://127.0.0.1:1/sample/manifest.mpd")
    one_line(completed)
    report = json.loads(completed.stdout)
    assert "connection refused" in report["error"]
    assert report["segments"] == 0


def test_down_with_nothing_running(tmp_path: Path) -> None:
    line = one_line(seedcast("--data", str(tmp_path), "down", check=False))
    assert "no cluster is running" in line


def test_unknown_option_names_the_subcommand() -> None:
    line = one_line(seedcast("up", "--bogus", check=False), code=2)
    assert line.startswith("seedcast up: error: unrecognized arguments: --bogus")
    assert "seedcast up --help" in line
