"""Every shell line of README.md and deploy/README.md, run as a user would.

The fenced ``sh`` blocks are read from the files; each line runs in bash in a
temporary folder (with ``.venv`` there pointing at this interpreter's
environment), in order, the environment carried from one line to the next
(so ``. .venv/bin/activate`` holds). A line fails on a non-zero exit or on
an error line in its output. README.md's lines run against the default
loopback cluster they describe (it is brought down and checked at the end).

Lines that need something the suite can't give are in EXCEPTIONS with the
reason; some of those run in a bounded form instead (``how``), the rest are
not run. A line neither run nor listed fails the test, so a new README
command needs a decision here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from seedcast.launcher.state import processes_of, read_state

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ERROR_LINE = re.compile(
    r"^(error|ERROR|Error)\b|Traceback \(most recent call last\)|HTTP error \d+|Failed to open",
    re.MULTILINE,
)
LINE_TIMEOUT = 150.0


@dataclass(frozen=True)
class Exception_:
    reason: str
    how: Callable[[str], str] | None = None
    """The bounded form the test runs instead (None: not run)."""


def _headless_mpv(line: str) -> str:
    # --cache=no: read only what 4 s need. (Reading to the end, the libavformat of
    # Debian's mpv asks for segment N+1 of N and logs the 404 before it stops.)
    return line.replace("mpv ", "mpv --vo=null --ao=null --cache=no --length=4 ", 1)


def _headless_chromium(line: str) -> str:
    url = shlex.split(line)[1]
    return (
        "chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=8000 "
        f"--dump-dom {shlex.quote(url)} | grep -q '<video'"
    )


def _help(line: str) -> str:
    return f"{line.split('#')[0].strip()} --help"


def _script_help(line: str) -> str:
    """``python SCRIPT --help``: the script's own options may pass the rest on (after --)."""
    return " ".join([*line.split()[:2], "--help"])


CLUSTER_NEEDED = "needs a Kubernetes cluster (the manifests are checked in tests/unit/deploy/)"
DOCKER_NEEDED = (
    "needs a Docker daemon and the network to pull python:3.11-slim "
    "(the image is checked in tests/unit/deploy/test_deploy_image.py)"
)
EXCEPTIONS: dict[str, Exception_] = {
    "make demo": Exception_(
        "runs until Ctrl-C; `up --demo` is what tests/e2e/test_cluster.py starts"
    ),
    "make test": Exception_("is this test suite"),
    "chromium ": Exception_(
        "opens a window: run headless, the page must render its <video>", _headless_chromium
    ),
    "mpv ": Exception_("opens a window and plays 30 s: run without output for 4 s", _headless_mpv),
    "seedcast bench ": Exception_(
        "minutes each, and benchmarks are not tests: the test checks the options with --help",
        _help,
    ),
    "python benchmarks/": Exception_(
        "a benchmark script (minutes: several bench runs): the test checks its options",
        _script_help,
    ),
    "seedcast simulate calibrate": Exception_(
        "simulates every calibration point at piece level and the 1..10^6 sweep (~3 min); "
        "tests/integration/sim/test_calibration.py checks the calibration itself",
        _help,
    ),
    "docker ": Exception_(DOCKER_NEEDED),
    "kubectl apply": Exception_(CLUSTER_NEEDED),
    "kubectl delete": Exception_(CLUSTER_NEEDED),
    "kubectl -n seedcast": Exception_(CLUSTER_NEEDED),
}


def shell_lines(path: Path) -> list[str]:
    """The command lines of every ```sh block (continuations joined, blank lines dropped)."""
    lines: list[str] = []
    inside = False
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("```"):
            inside = raw.strip() == "```sh"
            continue
        if not inside or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append((pending + raw).strip())
        pending = ""
    return lines


def exception_for(line: str) -> Exception_ | None:
    for prefix, exception in EXCEPTIONS.items():
        if line.startswith(prefix):
            return exception
    return None


class Shell:
    """Runs lines one by one in ``folder``; exported variables carry over (a saved env file)."""

    def __init__(self, folder: Path, path_dirs: list[Path]) -> None:
        self.folder = folder
        self.env_file = folder / ".readme-env"
        env = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL")}
        env["PATH"] = os.pathsep.join([*map(str, path_dirs), env.get("PATH", "")])
        self.env = env
        self.env_file.write_text("", encoding="utf-8")
        self.results: list[tuple[str, str]] = []

    def run(self, line: str, *, timeout: float = LINE_TIMEOUT) -> str:
        script = f". {shlex.quote(str(self.env_file))}\n{line}\nstatus=$?\n" + (
            f"export -p > {shlex.quote(str(self.env_file))}\nexit $status\n"
        )
        completed = subprocess.run(
            ["bash", "-c", script],
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = completed.stdout + completed.stderr
        problem = ""
        if completed.returncode != 0:
            problem = f"exit {completed.returncode}"
        elif match := ERROR_LINE.search(_without_end_probe(output)):
            problem = f"error line: {output[match.start() :].splitlines()[0]}"
        self.results.append((line, problem or "ok"))
        assert not problem, f"README line failed ({problem}): {line}\n{output[-3000:]}"
        return completed.stdout


_OPENED = re.compile(r"Opening '[^']*-(\d{5})\.m4s' for reading")
_END_PROBE = re.compile(
    r"Opening '[^']*-(\d{5})\.m4s' for reading\n.*HTTP error 404 Not Found\n"
    r".*Failed to open fragment of playlist\n.*Error when loading first fragment of playlist\n"
    r"(.*Error during demuxing: Invalid data found when processing input\n)?"
)


def _without_end_probe(output: str) -> str:
    """``output`` without libavformat's probe past the last segment of a static MPD.

    FFmpeg's DASH demuxer, given a ``SegmentTemplate@duration`` presentation that
    is an exact multiple of the segment duration, asks for segment N+1 after the
    last (N) and logs our (correct) 404 before ending normally. Only that exact
    case is forgiven: the 404'd number is one past every segment it opened.
    """
    match = _END_PROBE.search(output)
    if match is None:
        return output
    opened = [int(number) for number in _OPENED.findall(output[: match.start()])]
    if not opened or int(match.group(1)) != max(opened) + 1:
        return output
    return output[: match.start()] + output[match.end() :]


def tool_dirs(tmp_path: Path) -> list[Path]:
    """The venv's bin, plus ffmpeg from imageio-ffmpeg when the system has none."""
    dirs = [Path(sys.executable).parent]
    if shutil.which("ffmpeg") is None:
        import imageio_ffmpeg

        extra = tmp_path / "bin"
        extra.mkdir()
        (extra / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
        dirs.append(extra)
    return dirs


def missing_tools(lines: list[str]) -> list[str]:
    wanted = {"chromium", "mpv", "dig", "curl"}
    used = {line.split()[0] for line in lines}
    return sorted(tool for tool in wanted & used if shutil.which(tool) is None)


@contextlib.contextmanager
def default_cluster(folder: Path, shell: Shell) -> Iterator[None]:
    """Whatever the lines start is brought down, and no process of it is left."""
    try:
        yield
    finally:
        state = read_state(folder / ".seedcast" / "run")
        if state is not None:
            shell.env_file.write_text("", encoding="utf-8")
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                shell.run(f"{shlex.quote(sys.executable)} -m seedcast down")
            leftovers = processes_of(state.cluster_id)
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            assert leftovers == [], f"processes left behind: {leftovers}"


def check_output(line: str, stdout: str) -> None:
    """What some lines print must also be right, not merely exit 0."""
    if "seedcast play" in line and "--json" in line:
        report = json.loads(stdout)
        assert report["error"] is None
        assert report["bytes_from_edges"] + report["bytes_from_peers"] > 0
    if line.startswith("dig ") and line.split("#")[0].strip().endswith("HTTPS"):
        assert re.search(r"\bIN\s+HTTPS\s+1 \. .*port=8080", stdout), stdout
    elif line.startswith("dig "):
        assert re.search(r"video\.kingcdn\.test\.\s+\d+\s+IN\s+A\s+127\.0\.20\.", stdout), stdout


def run_lines(lines: list[str], shell: Shell) -> list[tuple[str, str]]:
    for line in lines:
        exception = exception_for(line)
        if exception is not None and exception.how is None:
            shell.results.append((line, f"not run: {exception.reason}"))
            continue
        command = exception.how(line) if exception is not None else line
        stdout = shell.run(command)
        if exception is not None:
            shell.results[-1] = (line, f"ran as `{command}` ({exception.reason})")
        check_output(line, stdout)
    return shell.results


def report(results: list[tuple[str, str]]) -> None:
    width = max(len(line) for line, _ in results)
    for line, result in results:
        print(f"{line:<{width}}  {result}")


def test_every_line_is_decided() -> None:
    """Each line is run, or run in a bounded form, or listed with its reason."""
    for name in ("README.md", "deploy/README.md"):
        lines = shell_lines(REPO / name)
        assert lines, name
        for line in lines:
            assert line.split()[0] in {
                ".",
                "seedcast",
                "make",
                "chromium",
                "mpv",
                "ffmpeg",
                "curl",
                "dig",
                "docker",
                "kubectl",
                "cp",
                "python",
            }, f"{name}: {line!r} needs a decision in this test"


def test_readme_commands_work_as_printed(tmp_path: Path) -> None:
    lines = shell_lines(REPO / "README.md")
    missing = missing_tools(lines)
    if missing:
        pytest.skip(f"system packages missing: {', '.join(missing)}")
    for address in ("127.0.10.1", "127.0.20.1", "127.0.53.1"):
        assert not _listening(address, 8080 if address != "127.0.53.1" else 5353), (
            f"{address} is taken: is a demo cluster running? (`seedcast down` it)"
        )
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    # As in a clone: lines that read the finished benchmark results name them relatively.
    (tmp_path / "benchmarks").symlink_to(REPO / "benchmarks")
    shell = Shell(tmp_path, tool_dirs(tmp_path))
    with default_cluster(tmp_path, shell):
        results = run_lines(lines, shell)
    report(results)
    assert read_state(tmp_path / ".seedcast" / "run") is None or not processes_of(
        read_state(tmp_path / ".seedcast" / "run").cluster_id  # type: ignore[union-attr]
    )


def test_deploy_readme_commands_work_as_printed(tmp_path: Path) -> None:
    lines = shell_lines(REPO / "deploy" / "README.md")
    if shutil.which("kubectl") is None:
        pytest.skip("system package missing: kubectl")
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    shell = Shell(tmp_path, tool_dirs(tmp_path))
    results = run_lines(lines, shell)
    report(results)
    ran = [line for line, result in results if not result.startswith("not run")]
    assert any(line.startswith("kubectl kustomize") for line in ran)


def _listening(host: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0
