"""The CLI's one error boundary: exceptions from trio tasks arrive wrapped in groups."""

from __future__ import annotations

import argparse

import pytest
import trio
from seedcast import cli
from seedcast.config import ClusterConfig
from seedcast.errors import ConfigError, UsageError


def run_with(monkeypatch: pytest.MonkeyPatch, failure: BaseException) -> int:
    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("action", nargs="?")

    def run(args: argparse.Namespace, config: ClusterConfig) -> int:
        async def task() -> None:
            raise failure

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(task)

        trio.run(main)
        return 0

    monkeypatch.setattr(cli, "_load_runner", lambda command: (configure, run))
    return cli.main(["config"])


def test_ctrl_c_inside_a_task_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_with(monkeypatch, KeyboardInterrupt()) == 130
    assert capsys.readouterr().err.strip() == "seedcast config: interrupted"


def test_our_error_inside_a_task_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_with(monkeypatch, ConfigError("cluster.toml: x: bad")) == 1
    assert capsys.readouterr().err.strip() == "seedcast config: error: cluster.toml: x: bad"


def test_usage_error_inside_a_task_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_with(monkeypatch, UsageError("--seconds must be positive")) == 2
    assert "--seconds must be positive" in capsys.readouterr().err


def test_a_bug_is_one_line_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_with(monkeypatch, ZeroDivisionError("division by zero")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "internal error: ZeroDivisionError" in err
    assert "--debug" in err
