"""The swarm's tracker client: HTTP announces (started, periodic, completed, stopped).

How it works. :meth:`Announcer.run` announces ``started``, then again every
interval the tracker asks for (sooner, at its ``min interval``, while we
have few peers and still download), ``completed`` as soon as the download
completes (:meth:`Announcer.wake`), and ``stopped`` when cancelled. Each
announce tries the tracker URLs in turn; the first answer wins and its peers
go to :meth:`Swarm.learn_peers`. A tracker that is down is retried with an
exponential back-off and logged once, not on every attempt. The request and
response formats are the sans-IO :mod:`seedcast.peer.announce`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import trio
from seedcast.errors import ProtocolError, SeedcastError, TransportError
from seedcast.peer.announce import (
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    parse_announce_response,
)
from seedcast.peer.connection import Wakeup

if TYPE_CHECKING:
    from seedcast.http11 import HttpClient
    from seedcast.peer.swarm import Swarm

__all__ = ["Announcer", "Fetch"]

log = logging.getLogger("seedcast.peer")

_STOPPED_ANNOUNCE_SECONDS = 2.0

Fetch = Callable[[str, str | None], Awaitable[bytes]]
"""``await fetch(url, local_address)`` -> response body (raises TransportError / ProtocolError)."""


class Announcer:
    """Announces ``swarm`` to its trackers. See the module docstring."""

    def __init__(self, swarm: Swarm, urls: Sequence[str], fetch: Fetch | None = None) -> None:
        self._swarm = swarm
        self.urls = [url for url in urls if url.startswith("http")]
        self._fetch = fetch
        self._http: HttpClient | None = None
        self._wakeup = Wakeup()
        self.errors = 0
        self.last_response: AnnounceResponse | None = None

    def wake(self) -> None:
        """Something worth announcing happened (the download completed)."""
        self._wakeup.set()

    async def announce(
        self, event: AnnounceEvent | None, *, quiet: bool = False
    ) -> AnnounceResponse | None:
        """One announce to each tracker URL in turn; the first answer wins. None if all fail.

        Failures are counted and logged (a warning, or debug when ``quiet``).
        """
        swarm = self._swarm
        settings = swarm.settings
        assert swarm.listen_address is not None
        request = AnnounceRequest(
            info_hash=swarm.metainfo.info_hash,
            peer_id=swarm.peer_id,
            port=swarm.listen_address[1],
            uploaded=swarm.bytes_uploaded,
            downloaded=swarm.bytes_downloaded,
            left=swarm.bytes_left(),
            event=event,
            numwant=0 if event is AnnounceEvent.STOPPED else settings.numwant,
        )
        for url in self.urls:
            try:
                with trio.fail_after(settings.announce_timeout):
                    body = await self._get(request.url(url))
                response = parse_announce_response(body)
            except (SeedcastError, OSError, trio.TooSlowError, ValueError) as error:
                self.errors += 1
                reason = error.reason if isinstance(error, ProtocolError) else type(error).__name__
                log.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "announce failed",
                    extra={"fields": {"tracker": url, "reason": reason, "error": error}},
                )
                continue
            self.last_response = response
            swarm.learn_peers((peer.host, peer.port, peer.peer_id) for peer in response.peers)
            return response
        return None

    async def _get(self, url: str) -> bytes:
        settings = self._swarm.settings
        if self._fetch is not None:
            return await self._fetch(url, settings.local_address)
        if self._http is None:
            timeout = settings.announce_timeout
            from seedcast.http11 import HttpClient

            self._http = HttpClient(
                connect_timeout=timeout,
                read_timeout=timeout,
                max_connections_per_host=2,
                local_address=settings.local_address,
            )
        response = await self._http.request("GET", url)
        if response.status != 200:
            raise TransportError(f"tracker answered HTTP {response.status}")
        content: bytes = response.content
        return content

    async def run(self) -> None:
        """Announce until cancelled, then say ``stopped``."""
        swarm = self._swarm
        picker = swarm.picker
        event: AnnounceEvent | None = AnnounceEvent.STARTED
        completed_sent = picker.complete
        failures = 0
        try:
            while True:
                response = await self.announce(event, quiet=failures > 0)
                if response is None:
                    # Back off, and say so once: a tracker that is down must not flood the log.
                    delay = min(5.0 * 2**failures, 300.0)
                    failures += 1
                else:
                    failures = 0
                    event = None
                    delay = response.interval
                    wanted = min(10, swarm.settings.max_connections)
                    few_peers = swarm.connection_count() < wanted
                    if few_peers and not picker.complete and response.min_interval:
                        delay = min(delay, max(response.min_interval, 5.0))
                with trio.move_on_after(delay):
                    while completed_sent or not picker.complete:
                        await self._wakeup.wait()
                if picker.complete and not completed_sent:
                    completed_sent = True
                    if event is None:
                        event = AnnounceEvent.COMPLETED
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_STOPPED_ANNOUNCE_SECONDS):
                await self.announce(AnnounceEvent.STOPPED, quiet=True)
                if self._http is not None:
                    await self._http.aclose()
                    self._http = None
