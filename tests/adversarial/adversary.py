"""Real role processes to attack, and what the attacks measure (RSS, metrics, probes).

:func:`running_role` starts ``python -m seedcast <role>`` on a loopback address with
port 0, waits for its ``ready`` log line, drains its stderr (counting lines, so a test
can bound log volume) and stops it by pid afterwards. Attack results are printed as
table rows (``pytest -s`` shows them): attack, result, RSS before/after, recovery.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_READY = re.compile(r" ready addresses=(\S+)")


@dataclass
class Role:
    process: subprocess.Popen[bytes]
    addresses: list[tuple[str, int]]
    log_lines: list[str] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return self.addresses[0]

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss(self) -> int:
        """Resident set size in bytes (from /proc)."""
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def metrics(self, address: tuple[str, int] | None = None) -> str:
        status, body = http_get(address or self.address, "/metrics")
        assert status == 200
        return body.decode()

    def metric(self, name: str, address: tuple[str, int] | None = None) -> float:
        """Sum of every series of ``name`` (labels ignored); 0 when absent."""
        total = 0.0
        for line in self.metrics(address).splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


def http_get(
    address: tuple[str, int], path: str, *, source: str | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One plain HTTP/1.1 GET; (status, body)."""
    with socket.create_connection(
        address, timeout=timeout, source_address=(source, 0) if source else None
    ) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {address[0]}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def raw_exchange(
    address: tuple[str, int], data: bytes, *, timeout: float = 10.0
) -> tuple[bytes, bool]:
    """Send ``data``; (everything the server sent until it closed, whether it closed)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            return received, False
    return received, True


@contextlib.contextmanager
def running_role(
    tmp_path: Path, role: str, listen: str, *args: str, config: str = ""
) -> Iterator[Role]:
    config_file = tmp_path / f"{role}.toml"
    config_file.write_text(config, encoding="utf-8")
    command = [
        sys.executable, "-m", "seedcast", "--config", str(config_file),
        "--data", str(tmp_path / "data"), role, "--listen", listen, *args,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    lines: list[str] = []
    ready = threading.Event()
    drain = threading.Thread(target=_drain, args=(process, lines, ready), daemon=True)
    drain.start()
    try:
        if not ready.wait(30) or process.poll() is not None:
            raise AssertionError(f"{role} not ready in 30 s: {' '.join(lines[-5:])}")
        yield Role(process, _ready_addresses(lines), lines)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        drain.join(10)
        if process.stderr is not None:
            process.stderr.close()


def _ready_addresses(lines: list[str]) -> list[tuple[str, int]]:
    for line in lines:
        match = _READY.search(line)
        if match:
            result = []
            for item in match.group(1).split(","):
                host, _, port = item.rpartition(":")
                result.append((host.strip("[]"), int(port)))
            return result
    raise AssertionError("no ready line")


def _drain(process: subprocess.Popen[bytes], lines: list[str], ready: threading.Event) -> None:
    assert process.stderr is not None
    for raw in process.stderr:
        line = raw.decode(errors="replace")
        lines.append(line)
        if not ready.is_set() and _READY.search(line):
            ready.set()
    ready.set()  # EOF: the process is gone


def report(attack: str, result: str, before: int, after: int, recovery: float | None) -> None:
    """One row of the attack table (printed; ``pytest -s`` shows it)."""
    recovered = "-" if recovery is None else f"{recovery:.2f} s"
    print(
        f"\n| {attack} | {result} | {before / 2**20:.1f} MiB | {after / 2**20:.1f} MiB "
        f"| {recovered} |"
    )


def fill(folder: Path, *, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` to ENOSPC, then free ``leave`` bytes; the filler."""
    filler = folder / "filler"
    block = b"\0" * 65536
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError:
            pass
    # A partial write may have stopped inside a page: sync the size to what is stored.
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler
