"""Fixtures for the network-namespace tests: skip with the reason when we can't make one."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from seedcast.errors import SeedcastError


def _why_not() -> str | None:
    """None when this machine can run ``--netns`` (root, Linux, ip/tc, a namespace works)."""
    from seedcast.launcher.netns import check_support

    try:
        check_support("the netns tests")
    except SeedcastError as error:
        return str(error)
    probe = f"scprobe{os.getpid() % 100000}"
    ip = shutil.which("ip") or "ip"
    try:
        added = subprocess.run(
            [ip, "netns", "add", probe], capture_output=True, text=True, timeout=10
        )
        if added.returncode != 0:
            return f"`ip netns add` fails here: {added.stderr.strip()}"
        ran = subprocess.run(
            [ip, "netns", "exec", probe, ip, "link", "show", "lo"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if ran.returncode != 0:
            return f"`ip netns exec` fails here: {ran.stderr.strip()}"
    finally:
        subprocess.run([ip, "netns", "del", probe], capture_output=True, timeout=10)
    return None


@pytest.fixture(scope="session")
def netns_ready() -> None:
    """Skips the test (with the reason) unless namespaces, veths and tc are usable."""
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
