"""The player is below the agent: the agent imports the player, never the other way round."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import seedcast.player
from seedcast.agent.commands import configure_play


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_player_module_imports_the_agent_or_the_peer() -> None:
    folder = Path(seedcast.player.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert modules
    for module in modules:
        for name in _imports(module):
            assert not name.startswith(("seedcast.agent", "seedcast.peer")), (module.name, name)


def test_seedcast_play_offers_via_peer_from_the_agents_side() -> None:
    parser = argparse.ArgumentParser()
    configure_play(parser)
    args = parser.parse_args(["http://x/v/manifest.mpd", "--via-peer"])
    assert args.via_peer
    assert not parser.parse_args(["http://x/v/manifest.mpd"]).via_peer
