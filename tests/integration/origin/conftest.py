"""Origin fixtures: a short real sample, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from seedcast.testing.origin import make_sample


@pytest.fixture(scope="session")
def origin_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8 s 960x540 H.264 + AAC sample made by `seedcast sample` (once per session)."""
    return make_sample(
        tmp_path_factory.getbasetemp() / "origin-media" / "sample-8s.mp4", seconds=8, size="960x540"
    )
