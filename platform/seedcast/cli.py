"""The ``seedcast`` command line: one table of commands, imported lazily.

Each command lives in the module that owns it. That module defines two
functions named after the command (dashes become underscores)::

    def configure_<command>(parser: argparse.ArgumentParser) -> None: ...
    def run_<command>(args: argparse.Namespace, config: ClusterConfig) -> int: ...

Only the chosen command's module is imported, so ``seedcast --help`` and
``seedcast status`` start fast. A command whose module or functions don't
exist yet says so in one line and exits 1; it never pretends.

Errors: usage errors are one line and exit 2; a :class:`SeedcastError` or an
``OSError`` is one line naming what failed and exit 1; anything else is one
line plus a hint to rerun with ``--debug``, which shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from seedcast.config import ClusterConfig, load_config, to_toml
from seedcast.errors import NotReadyError, SeedcastError, UsageError
from seedcast.version import version

# command -> (owning module, one-line help, issue that builds it)
COMMANDS: dict[str, tuple[str, str]] = {
    "sample": (
        "seedcast.origin.commands",
        "make a test video (moving picture, frame counter, tone)",
    ),
    "publish": (
        "seedcast.origin.commands",
        "package a video as multi-bitrate DASH plus a .torrent",
    ),
    "library": ("seedcast.origin.commands", "list the published videos"),
    "torrent": ("seedcast.peer.torrent_commands", "create or show a .torrent file"),
    "config": ("seedcast.cli", "show the resolved cluster config as TOML"),
    "up": ("seedcast.launcher.up", "start a local cluster and supervise it"),
    "status": ("seedcast.launcher.status", "show the processes of the running cluster"),
    "down": ("seedcast.launcher.down", "stop the running cluster"),
    "play": ("seedcast.agent.commands", "stream a video with the headless ABR player"),
    "bench": (
        "seedcast.bench.commands",
        "benchmarks and load tests (http, edge, dns, swarm, distribution, streaming)",
    ),
    "simulate": (
        "seedcast.sim.commands",
        "simulate the benches at internet scale (distribution, streaming, calibrate)",
    ),
    "origin": ("seedcast.origin.commands", "run the origin HTTP server in the foreground"),
    "edge": ("seedcast.edge.commands", "run a CDN edge cache in the foreground"),
    "dns": (
        "seedcast.nameserver.commands",
        "run the authoritative DNS server in the foreground",
    ),
    "tracker": ("seedcast.tracker.commands", "run the BitTorrent tracker in the foreground"),
    "peer": ("seedcast.peer.commands", "run a BitTorrent peer (or viewer agent) in the foreground"),
    "netem": (
        "seedcast.netem.commands",
        "run the relays that emulate delay, jitter and loss between regions",
    ),
}

Runner = Callable[[argparse.Namespace, ClusterConfig], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (exit 2), without the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are SUPPRESS so `seedcast --data X up` is not
    # overwritten by the subparser's default.
    default = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="cluster.toml (default: $SEEDCAST_CONFIG, else the built-in cluster)",
    )
    group.add_argument(
        "--data",
        metavar="DIR",
        default=default,
        help="media library and state (default: from the config, else ./.seedcast)",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show tracebacks and debug logs",
    )


def _chosen_command(argv: Sequence[str]) -> str | None:
    skip_next = False
    for token in argv:
        if skip_next:
            skip_next = False
            continue
        if token in ("--config", "--data"):
            skip_next = True
            continue
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def _load_runner(command: str) -> tuple[Callable[[argparse.ArgumentParser], None], Runner] | None:
    module_name, _ = COMMANDS[command]
    attribute = command.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            return None
        raise
    configure = getattr(module, f"configure_{attribute}", None)
    run = getattr(module, f"run_{attribute}", None)
    if configure is None or run is None:
        return None
    return configure, run


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict[str, Runner | None]]:
    parser = _Parser(
        prog="seedcast",
        description="Seedcast: hybrid CDN + peer-to-peer video streaming.",
        epilog="Run `seedcast COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"seedcast {version()}")
    _global_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = _chosen_command(argv)
    runners: dict[str, Runner | None] = {}
    for command, (_, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(command, help=help_text, description=help_text)
        _global_options(sub, top=False)
        if command != chosen:
            continue
        loaded = _load_runner(command)
        if loaded is None:
            runners[command] = None
            sub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        else:
            configure, run = loaded
            configure(sub)
            runners[command] = run
    return parser, runners


def resolve_config(args: argparse.Namespace) -> ClusterConfig:
    """The config named by --config (or the built-in one), with --data applied."""
    import dataclasses
    import os

    # Containers name their config in the environment (compose, Kubernetes).
    config = load_config(args.config or os.environ.get("SEEDCAST_CONFIG") or None)
    if args.data:
        config = dataclasses.replace(
            config, cluster=dataclasses.replace(config.cluster, data_dir=str(Path(args.data)))
        )
    return config


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, runners = build_parser(argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        # argparse would report them as the top-level command's; they belong to the subcommand.
        prog = f"seedcast {args.command}" if args.command else "seedcast"
        print(
            f"{prog}: error: unrecognized arguments: {' '.join(extras)} (see {prog} --help)",
            file=sys.stderr,
        )
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    prog = f"seedcast {args.command}"
    try:
        run = runners.get(args.command)
        if run is None:
            module_name, _ = COMMANDS[args.command]
            raise NotReadyError(f"not built yet ({module_name} has no run_{args.command})")
        config = resolve_config(args)
        return run(args, config)
    except BaseExceptionGroup as group:
        # trio's nurseries wrap what their tasks raised: unwrap to the first
        # meaningful leaf so a Ctrl-C or a SeedcastError inside a task is
        # reported the same way as one raised directly.
        if args.debug:
            raise
        return _report(prog, _first_leaf(group))
    except BaseException as error:
        if args.debug and not isinstance(error, KeyboardInterrupt | SystemExit):
            raise
        return _report(prog, error)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The leaf to report: a Ctrl-C wins, then our own errors, then anything."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    for kind in (KeyboardInterrupt, UsageError, SeedcastError, OSError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0] if leaves else group


def _report(prog: str, error: BaseException) -> int:
    """One line on stderr for ``error``; the exit code."""
    if isinstance(error, SystemExit):
        raise error
    if isinstance(error, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if isinstance(error, UsageError):
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if isinstance(error, SeedcastError):
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    if isinstance(error, OSError):
        where = f": {error.filename}" if error.filename else ""
        print(f"{prog}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    # The last boundary: one line, never a traceback.
    print(
        f"{prog}: internal error: {type(error).__name__}: {error} "
        "(rerun with --debug for the traceback)",
        file=sys.stderr,
    )
    return 1


# --- `seedcast config show`, owned here -------------------------------------


def configure_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show"], help="show: print the resolved config as TOML")


def run_config(args: argparse.Namespace, config: ClusterConfig) -> int:
    sys.stdout.write(to_toml(config))
    return 0
