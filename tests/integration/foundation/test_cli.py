"""The `seedcast` command as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from seedcast.cli import COMMANDS

REPO = Path(__file__).resolve().parents[3]


def seedcast(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "seedcast", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def test_version() -> None:
    result = seedcast("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("seedcast ")


def test_help_lists_every_command() -> None:
    result = seedcast("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    result = seedcast(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: seedcast" in result.stdout


def test_usage_error_is_one_line_and_exit_2() -> None:
    result = seedcast("config", "--no-such-option")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "error" in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    result = seedcast("frobnicate")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text('[[edges]]\nname = "x"\nregion = "mars"\n', encoding="utf-8")
    result = seedcast("--config", str(config), "config", "show")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f'seedcast config: error: {config}: edges[0].region: unknown region "mars" (known: eu, us)'
    )
    assert "Traceback" not in result.stderr


def test_config_show_prints_toml_that_reads_back(tmp_path: Path) -> None:
    result = seedcast("--data", str(tmp_path / "d"), "config", "show")
    assert result.returncode == 0
    data = tomllib.loads(result.stdout)
    assert data["cluster"]["data_dir"] == str(tmp_path / "d")
    shown = tmp_path / "shown.toml"
    shown.write_text(result.stdout, encoding="utf-8")
    again = seedcast("config", "show", "--config", str(shown))
    assert again.returncode == 0
    assert tomllib.loads(again.stdout) == data


def test_import_uuid_still_works_in_the_repo_root() -> None:
    # platform/ must never shadow the standard library's platform module.
    assert not (REPO / "platform" / "__init__.py").exists()
    result = subprocess.run(
        [sys.executable, "-c", "import uuid, platform; print(platform.python_version())"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_package_folder_is_declared_in_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(project["tool"]["setuptools"]["packages"])
    mapping = project["tool"]["setuptools"]["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            if "node_modules" in relative.parts or "static" in relative.parts:
                continue
            found.add(".".join([package, *relative.parts]))
    found.add("seedcast")
    assert found <= declared, f"missing from pyproject packages: {sorted(found - declared)}"
