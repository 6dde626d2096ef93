"""Shared fixtures: free loopback ports, a built-in config with its dirs in tmp."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from seedcast.config import ClusterConfig, default_config


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    """The built-in cluster config with data and run dirs inside tmp_path."""
    base = default_config()
    return dataclasses.replace(
        base,
        cluster=dataclasses.replace(
            base.cluster, data_dir=str(tmp_path / "data"), run_dir=str(tmp_path / "run")
        ),
    )
