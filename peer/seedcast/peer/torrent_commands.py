"""``seedcast torrent create|show``: make a .torrent from a folder or file, or print one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seedcast.config import ClusterConfig
from seedcast.errors import RemoteProtocolError, SeedcastError, UsageError
from seedcast.peer.metainfo import (
    MAX_METAINFO_SIZE,
    Metainfo,
    create_single_file_torrent,
    create_torrent,
)
from seedcast.units import format_size, parse_size


def configure_torrent(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="make a v1 .torrent from a folder (every file, BEP 47 padded) or one file",
        description="Make a BitTorrent v1 .torrent. A folder gives a multi-file torrent whose "
        "files each start on a piece boundary (BEP 47 padding); a file gives a single-file one.",
    )
    create.add_argument("source", metavar="DIR|FILE", help="folder or file to share")
    create.add_argument(
        "--announce",
        metavar="URL",
        default=None,
        help="tracker URL (default: the cluster's tracker)",
    )
    create.add_argument(
        "--out", metavar="FILE", default=None, help="where to write (default: ./<name>.torrent)"
    )
    create.add_argument(
        "--name", default=None, help="torrent name (default: the folder or file name)"
    )
    create.add_argument(
        "--piece-length",
        metavar="SIZE",
        default=None,
        help="piece size, a power of two such as 256KiB (default: chosen from the total size)",
    )
    create.add_argument(
        "--no-pad", action="store_true", help="no padding files (files may share pieces)"
    )
    show = actions.add_parser("show", help="print a .torrent's name, hash, pieces and files")
    show.add_argument("file", metavar="FILE", help=".torrent file")


def run_torrent(args: argparse.Namespace, config: ClusterConfig) -> int:
    if args.action == "create":
        return _create(args, config)
    return _show(Path(args.file))


def _create(args: argparse.Namespace, config: ClusterConfig) -> int:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    source = Path(args.source)
    if not source.exists():
        raise UsageError(f"{source}: no such file or folder")
    announce = args.announce if args.announce is not None else config.tracker.announce_url
    piece_length = None
    if args.piece_length is not None:
        try:
            piece_length = parse_size(args.piece_length)
        except ValueError as error:
            raise UsageError(f"--piece-length: {error}") from None
    name = args.name or source.resolve().name
    out = Path(args.out) if args.out else Path(f"{name}.torrent")

    if source.is_dir():
        files = sorted(
            path.relative_to(source).as_posix()
            for path in source.rglob("*")
            if path.is_file() and not path.is_symlink()
        )
        if not files:
            raise UsageError(f"{source}: folder has no files")
        total = sum((source / relative).stat().st_size for relative in files)
    else:
        files = []
        total = source.stat().st_size

    with Progress(
        TextColumn("hashing {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task(name, total=total)

        def advance(count: int) -> None:
            progress.advance(task, count)

        if source.is_dir():
            data = create_torrent(
                source,
                files,
                announce=announce,
                name=name,
                piece_length=piece_length,
                pad_files=not args.no_pad,
                progress=advance,
            )
        else:
            data = create_single_file_torrent(
                source, announce=announce, name=name, piece_length=piece_length, progress=advance
            )
    temporary = out.with_name(out.name + ".part")
    temporary.write_bytes(data)
    temporary.replace(out)
    metainfo = Metainfo.parse(data)
    print(
        f"wrote {out}: {metainfo.name}, {len(metainfo.real_files)} file(s), "
        f"{format_size(metainfo.total_length)} in {metainfo.piece_count} pieces of "
        f"{format_size(metainfo.piece_length)}, info hash {metainfo.info_hash.hex()}"
    )
    return 0


def _show(path: Path) -> int:
    from rich.console import Console
    from rich.table import Table

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.stat().st_size > MAX_METAINFO_SIZE:
        raise SeedcastError(f"{path}: larger than {format_size(MAX_METAINFO_SIZE)}, not a torrent")
    try:
        metainfo = Metainfo.parse(path.read_bytes())
    except RemoteProtocolError as error:
        raise SeedcastError(f"{path}: {error}") from None

    console = Console()
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("name", metainfo.name)
    summary.add_row("info hash", metainfo.info_hash.hex())
    summary.add_row("announce", metainfo.announce or "(none)")
    summary.add_row(
        "pieces",
        f"{metainfo.piece_count} x {format_size(metainfo.piece_length)} "
        f"({metainfo.piece_length} bytes)",
    )
    summary.add_row(
        "size",
        f"{format_size(metainfo.total_length)} ({metainfo.total_length} bytes, padding included)",
    )
    summary.add_row("layout", "single file" if metainfo.single_file else "multi-file")
    if metainfo.private:
        summary.add_row("private", "yes")
    console.print(summary)

    table = Table(title=f"{len(metainfo.files)} files", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("bytes", justify="right")
    table.add_column("pieces", justify="right")
    table.add_column("padding")
    for number, entry in enumerate(metainfo.files):
        if entry.padding:
            pieces = ""
        else:
            covering = metainfo.file_pieces(entry.path)
            pieces = f"{covering.start}-{covering.stop - 1}" if covering else "-"
        table.add_row(
            str(number),
            str(metainfo.relative_path(entry)),
            format_size(entry.length),
            str(entry.length),
            pieces,
            "pad" if entry.padding else "",
            style="dim" if entry.padding else None,
        )
    console.print(table)
    return 0
