"""The Seedcast version (pyproject.toml reads it from here)."""

from __future__ import annotations

VERSION = "0.1.0"
"""A constant rather than a package-metadata lookup: every process reports it
(``--version``, ``seedcast_build_info``, ``Server:``), and importlib.metadata
costs ~17 ms of start-up per process."""


def version() -> str:
    return VERSION
