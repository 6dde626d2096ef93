"""The supervisor with real child processes (the launcher's test role).

Readiness, restart after SIGKILL, giving up on a crash loop, status rows,
log files, Prometheus targets, a clean stop that leaves nothing behind, and
children that die with a SIGKILLed launcher.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from seedcast.config import ClusterConfig
from seedcast.control import ControlChannel, ControlError, connect_control
from seedcast.launcher.cluster import wait_pids_gone
from seedcast.launcher.plan import ClusterPlan, ProcessSpec, Tier
from seedcast.launcher.state import pid_alive, read_state
from seedcast.launcher.supervision import RestartPolicy
from seedcast.launcher.supervisor import Supervisor

pytestmark = pytest.mark.slow


def dummy_spec(name: str, *options: str, tier: Tier = Tier.EDGES) -> ProcessSpec:
    argv = (
        sys.executable,
        "-m",
        "seedcast.testing.dummy_role",
        "--role",
        "edge",
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        *options,
    )
    return ProcessSpec("edge", name, argv, "127.0.0.1:0", tier=tier)


@asynccontextmanager
async def running(
    config: ClusterConfig, plan: ClusterPlan, policy: RestartPolicy | None = None
) -> AsyncIterator[tuple[Supervisor, ControlChannel]]:
    supervisor = Supervisor(
        config, plan, config_file=config.run_dir / "cluster.toml", policy=policy
    )
    ready = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervisor.run, lambda _: ready.set())
        with trio.fail_after(30):
            await ready.wait()
        client = await connect_control(supervisor.socket_path)
        nursery.start_soon(client.run)
        try:
            yield supervisor, client
        finally:
            supervisor.request_stop()
            await client.aclose()


async def test_ready_status_restart_and_clean_stop(config: ClusterConfig) -> None:
    plan = ClusterPlan(
        (dummy_spec("core", tier=Tier.CORE), dummy_spec("edge-a"), dummy_spec("edge-b"))
    )
    async with running(config, plan) as (supervisor, client):
        reply = await client.request("cluster-status")
        rows = {row["name"]: row for row in reply.get("processes")}
        assert set(rows) == {"core", "edge-a", "edge-b"}
        assert all(row["state"] == "ready" for row in rows.values())
        assert all(row["rss_bytes"] > 0 for row in rows.values())
        assert rows["edge-a"]["statistics"] == {"requests": 0, "purges": 0}
        pids = [row["pid"] for row in rows.values()]

        state = read_state(config.run_dir)
        assert state is not None
        assert sorted(state.pids()) == sorted(pids)
        targets = json.loads((config.run_dir / "prometheus" / "targets.json").read_text())
        assert sorted(entry["targets"][0] for entry in targets) == sorted(
            row["address"] for row in rows.values()
        )

        # Forwarded to the child's own handler.
        purge = await client.request("purge", {"prefix": "/x", "target": "edge-b"})
        assert purge.get("result") == {"purged": "/x"}

        victim = rows["edge-a"]["pid"]
        os.kill(victim, signal.SIGKILL)
        back = await client.request(
            "wait-ready", {"name": "edge-a", "after_pid": victim}, timeout=10
        )
        row = back.get("result")
        assert row["state"] == "ready"
        assert row["pid"] != victim
        assert row["restarts"] == 1
        pids.append(row["pid"])

        log_text = (config.run_dir / "logs" / "edge-a.log").read_text()
        assert log_text.count(" ready addresses=") == 2
    assert wait_pids_gone(pids, 0) == []
    assert read_state(config.run_dir) is None
    assert not os.path.exists(supervisor.socket_path)  # noqa: ASYNC240
    assert not (config.run_dir / "prometheus" / "targets.json").exists()


async def test_crash_loop_is_failed_and_the_rest_carries_on(config: ClusterConfig) -> None:
    fast = RestartPolicy(base_delay=0.01, max_delay=0.05)
    plan = ClusterPlan((dummy_spec("good"), dummy_spec("broken", "--fail")))
    async with running(config, plan, fast) as (_supervisor, client):
        rows = {
            row["name"]: row for row in (await client.request("cluster-status")).get("processes")
        }
        assert rows["good"]["state"] == "ready"
        broken = rows["broken"]
        assert broken["state"] == "failed"
        assert broken["restarts"] == 4
        assert "dummy asked to fail" in broken["error"]
        assert broken["pid"] is None
        with pytest.raises(ControlError, match="failed"):
            await client.request("wait-ready", {"name": "broken"})
        # The traceback, not a log line, went to the log file too.
        assert "Traceback" in (config.run_dir / "logs" / "broken.log").read_text()


async def test_impostors_are_turned_away(config: ClusterConfig) -> None:
    plan = ClusterPlan((dummy_spec("only"),))
    async with running(config, plan) as (supervisor, _):
        impostor = await connect_control(supervisor.socket_path)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(impostor.run)
            await impostor.send(
                "ready", {"role": "edge", "name": "only", "pid": 1, "addresses": ["127.0.0.1:1"]}
            )
            with pytest.raises(ControlError, match="does not handle"):
                await impostor.request("no-such-request")
            nursery.cancel_scope.cancel()
        await impostor.aclose()
        row = (await supervisor.process_rows(live=False))[0]
        assert row["addresses"] != ["127.0.0.1:1"]


LAUNCHER_SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, sys, trio
    from pathlib import Path
    from seedcast.config import default_config
    from seedcast.launcher.plan import ClusterPlan, ProcessSpec, Tier
    from seedcast.launcher.supervisor import Supervisor

    run_dir = Path(sys.argv[1])
    base = default_config()
    config = dataclasses.replace(base, cluster=dataclasses.replace(
        base.cluster, data_dir=str(run_dir / "data"), run_dir=str(run_dir)))
    specs = tuple(
        ProcessSpec("edge", name, (sys.executable, "-m", "seedcast.testing.dummy_role", "--name",
                    name, "--listen", "127.0.0.1:0"), "127.0.0.1:0", tier=Tier.EDGES)
        for name in ("one", "two", "three"))
    supervisor = Supervisor(config, ClusterPlan(specs), config_file=run_dir / "cluster.toml")

    def ready(running):
        print(json.dumps([child.record.pid for child in running.children]), flush=True)

    trio.run(supervisor.run, ready)
    """
)


def test_children_die_with_a_sigkilled_launcher(tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER_SCRIPT, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert launcher.stdout is not None
    try:
        pids = json.loads(launcher.stdout.readline())
        assert len(pids) == 3
        assert all(pid_alive(pid) for pid in pids)
        launcher.kill()
        launcher.wait()
        assert wait_pids_gone(pids, 2.0) == []
    finally:
        launcher.kill()
        launcher.wait()
        launcher.stdout.close()


def test_config_fixture_keeps_to_tmp(config: ClusterConfig) -> None:
    # Guard: these tests must never touch a real cluster's run directory.
    assert dataclasses.asdict(config.cluster)["run_dir"].endswith("/run")
