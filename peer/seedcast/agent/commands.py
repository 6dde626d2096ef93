"""``seedcast peer --agent``: a viewer's agent, the local server its players point at;
and ``seedcast play`` (the headless player's command, plus ``--via-peer``: through an agent
started in the same process -- the agent uses the player, never the other way round).

``seedcast peer --name viewer-1 --listen 127.0.40.2:6881 --agent
--agent-listen 127.0.40.2:8081 --region eu --torrent T --tracker URL`` serves
``http://127.0.40.2:8081/<id>/manifest.mpd`` to any DASH player, shares the
video's pieces on 127.0.40.2:6881, and reaches the CDN
(``http://video.netcinema.test:<edge port>`` unless ``--cdn``/``peers.cdn_url``)
from the region's viewer address (``eu`` viewer 1 -> 127.0.41.1), so the
Seedcast DNS steers it to an edge of its region. Files are kept under
``<run dir>/viewers/<name>/`` (``--storage``), never in the media library.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

from seedcast.config import ClusterConfig
from seedcast.errors import UsageError
from seedcast.units import parse_host_port, parse_rate

__all__ = ["configure_agent_options", "configure_play", "run_agent", "run_play", "viewer_address"]


def configure_play(parser: argparse.ArgumentParser) -> None:
    """``seedcast play``: the player's options and ``--via-peer``."""
    from seedcast.player.commands import configure_play as configure_player

    configure_player(parser)
    parser.add_argument(
        "--via-peer",
        action="store_true",
        help="stream through a viewer agent started in this process (joins the swarm)",
    )


def run_play(args: argparse.Namespace, config: ClusterConfig) -> int:
    from seedcast.player.commands import run_play as run_player

    if not args.via_peer:
        return run_player(args, config)
    from seedcast.agent.server import open_agent_for

    def via(url: str, config: ClusterConfig, resolver: Any, local_address: str | None) -> Any:
        return open_agent_for(url, config, resolver=resolver, local_address=local_address)

    return run_player(args, config, via=via)


def configure_agent_options(parser: argparse.ArgumentParser) -> None:
    """The options ``seedcast peer`` takes for agent mode."""
    group = parser.add_argument_group("viewer agent")
    group.add_argument(
        "--agent",
        action="store_true",
        help="run as a viewer's agent: serve players over HTTP from peers and the CDN",
    )
    group.add_argument(
        "--agent-listen",
        metavar="HOST:PORT",
        default=None,
        help="HTTP address for players (default: the --listen host, port peers.agent_port)",
    )
    group.add_argument(
        "--region",
        metavar="NAME",
        default=None,
        help="the viewer's region: CDN traffic leaves from the region's viewer address",
    )
    group.add_argument(
        "--viewer-address",
        metavar="ADDRESS",
        default=None,
        help="source address for CDN and DNS traffic (default: from --region and the name's "
        "number, e.g. viewer-3 in eu -> 127.0.41.3)",
    )
    group.add_argument(
        "--cdn",
        metavar="URL",
        default=None,
        help="CDN base URL (default: peers.cdn_url, else http://video.netcinema.test:<edge port>)",
    )
    group.add_argument(
        "--storage",
        metavar="DIR",
        default=None,
        help="where the agent keeps the videos' pieces (default: <run dir>/viewers/<name>)",
    )


def viewer_address(config: ClusterConfig, region: str, name: str, listen_host: str) -> str:
    """The viewer's source address in ``region``: viewer ``k`` (from the name) -> k-th address.

    Without a number in the name, the last byte of ``listen_host`` is used.
    Raises ConfigError for an unknown region.
    """
    found = config.region(region)
    match = re.search(r"(\d+)$", name)
    if match is not None and 0 < int(match.group(1)) < 255:
        index = int(match.group(1))
    else:
        try:
            index = int(listen_host.rsplit(".", 1)[1])
        except (IndexError, ValueError):
            index = 1
    return found.viewer_address(index)


def _address(text: str, option: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None


def run_agent(args: argparse.Namespace, config: ClusterConfig) -> int:
    import trio
    from seedcast.agent.server import Agent, agent_settings_from_config, default_cdn_url
    from seedcast.agent.sources import CdnClient
    from seedcast.agent.watching import watch_through_agent
    from seedcast.metrics import new_registry
    from seedcast.peer.metainfo import Metainfo
    from seedcast.roles import run_role

    peers = config.peers
    name = args.name
    listen = (
        _address(args.listen, "--listen") if args.listen else (peers.peer_address(1), peers.port)
    )
    if args.agent_listen:
        agent_listen = _address(args.agent_listen, "--agent-listen")
    else:
        agent_listen = (listen[0], peers.agent_port if listen[1] else 0)
    local_host = listen[0] if listen[0] not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if args.viewer_address:
        source = args.viewer_address
    elif args.region:
        source = viewer_address(config, args.region, name, local_host)
    else:
        source = local_host
    cdn_url = args.cdn or default_cdn_url(config)
    metainfo = None
    if args.torrent:
        torrent = Path(args.torrent)
        try:
            metainfo = Metainfo.parse(torrent.read_bytes())
        except FileNotFoundError:
            raise UsageError(f"--torrent: {torrent}: no such file") from None
    storage_dir = Path(args.storage) if args.storage else config.run_dir / "viewers" / name
    storage_dir.mkdir(parents=True, exist_ok=True)

    def rate(text: str | None, default: float, option: str) -> float:
        if text is None:
            return default
        try:
            return parse_rate(text)
        except ValueError as error:
            raise UsageError(f"{option}: {error}") from None

    settings = agent_settings_from_config(
        config,
        storage_dir,
        name=name,
        listen=f"{agent_listen[0]}:{agent_listen[1]}",
        peer_host=local_host,
        announce_urls=tuple(args.tracker) if args.tracker else None,
        extra_announce_urls=(config.tracker.announce_url,),
    )
    settings = dataclasses.replace(
        settings,
        swarm=dataclasses.replace(
            settings.swarm,
            upload_rate=rate(args.upload, peers.upload, "--upload"),
            download_rate=rate(args.download, peers.download, "--download"),
            max_connections=args.max_connections or peers.max_connections,
            local_address=local_host,
        ),
    )
    registry = new_registry("agent", name)
    holder: dict[str, Agent] = {}
    player: dict[str, Any] = {}
    from seedcast.agent.metrics import register_player_metrics

    register_player_metrics(registry, lambda: player)

    async def serve(task_status: Any) -> None:
        from seedcast.http11 import HttpClient
        from seedcast.resolver import StubResolver

        resolver = StubResolver(config.dns.server, local_address=source, timeout=1.0)
        async with HttpClient(
            connect_timeout=2.0, read_timeout=settings.cdn_read_timeout, local_address=source
        ) as http:
            cdn = CdnClient(cdn_url, http=http, resolver=resolver, local_address=source)
            agent = Agent(settings, cdn, registry=registry)
            holder["agent"] = agent
            if metainfo is not None:
                agent.add_video(metainfo, listen=listen)
            try:
                async with trio.open_nursery() as nursery:
                    addresses = await nursery.start(agent.serve)
                    for text in args.connect:
                        host, port = _address(text, "--connect")
                        for session in agent.videos.values():
                            session.swarm.add_peer(host, port)
                    task_status.started(addresses)
                    if config.peers.play_seconds > 0:
                        # A viewer that watches (``up --demo``): its player uses this agent.
                        video_id = (
                            metainfo.name if metainfo is not None else config.origin.sample_id
                        )
                        host, port = addresses[0].rsplit(":", 1)
                        nursery.start_soon(
                            watch_through_agent,
                            f"http://{host}:{port}/{video_id}/manifest.mpd",
                            config,
                            name,
                            player,
                        )
            finally:
                agent.close()

    async def set_rate(message: Any) -> dict[str, Any]:
        agent = holder.get("agent")
        upload = message.get("upload")
        download = message.get("download")
        if agent is not None:
            for session in agent.videos.values():
                session.swarm.set_rates(
                    upload=None if upload is None else rate(str(upload), 0, "upload"),
                    download=None if download is None else rate(str(download), 0, "download"),
                )
        return {"upload": upload, "download": download}

    def statistics() -> dict[str, Any]:
        agent = holder.get("agent")
        if agent is None:
            return {}
        return {**agent.statistics().as_status(), **player}

    return run_role(
        role="peer",
        name=name,
        config=config,
        serve=serve,
        control_handlers={"set-rate": set_rate},
        statistics=statistics,
        debug=bool(getattr(args, "debug", False)),
        metrics_address=f"{agent_listen[0]}:{agent_listen[1]}" if agent_listen[1] else None,
    )
