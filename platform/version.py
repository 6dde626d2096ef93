"""The installed Seedcast version."""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    try:
        return metadata.version("seedcast")
    except metadata.PackageNotFoundError:
        return "0+unknown"
