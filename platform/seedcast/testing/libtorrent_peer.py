"""libtorrent sessions as the baseline (benchmarks) and the real client (interop tests).

One :class:`LibtorrentPeer` is one libtorrent session with one torrent, bound
to a loopback address, with DHT, local peer discovery, UPnP and NAT-PMP off,
``allow_multiple_connections_per_ip`` on (every session shares 127.0.0.1)
and, when rates are capped, ``ignore_limits_on_local_network`` off (else
libtorrent exempts 127.0.0.0/8 from its own caps). libtorrent is a dev
dependency: this module imports it lazily and raises NotReadyError naming the
package when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from seedcast.errors import NotReadyError

__all__ = ["LibtorrentPeer", "libtorrent_module"]


def libtorrent_module() -> Any:
    try:
        import libtorrent
    except ImportError:
        raise NotReadyError("libtorrent is not installed (pip install libtorrent)") from None
    return libtorrent


class LibtorrentPeer:
    def __init__(
        self,
        torrent: bytes,
        save_path: Path,
        *,
        host: str = "127.0.0.1",
        upload_rate: float = 0,
        download_rate: float = 0,
        encryption: bool = False,
        utp: bool = False,
        extra_settings: dict[str, Any] | None = None,
        paused: bool = False,
    ) -> None:
        """``paused``: add the torrent paused (no announce, no connections) until
        :meth:`release`."""
        lt = libtorrent_module()
        self._lt = lt
        disabled = lt.enc_policy.disabled if hasattr(lt, "enc_policy") else 2
        settings: dict[str, Any] = {
            "listen_interfaces": f"{host}:0",
            "outgoing_interfaces": host,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "allow_multiple_connections_per_ip": True,
            "ignore_limits_on_local_network": False,
            "upload_rate_limit": int(upload_rate),
            "download_rate_limit": int(download_rate),
            "enable_outgoing_utp": utp,
            "enable_incoming_utp": utp,
            "alert_mask": lt.alert.category_t.status_notification
            | lt.alert.category_t.error_notification,
            "stop_tracker_timeout": 1,
        }
        if not encryption:
            settings["out_enc_policy"] = int(disabled)
            settings["in_enc_policy"] = int(disabled)
        settings.update(extra_settings or {})
        self.session = lt.session(settings)
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(lt.bdecode(torrent))
        params.save_path = str(save_path)
        if paused:
            params.flags |= lt.torrent_flags.paused
            params.flags &= ~lt.torrent_flags.auto_managed
        self.handle = self.session.add_torrent(params)
        self.host = host
        self._errors: list[str] = []
        self.announces = 0

    @property
    def port(self) -> int:
        return int(self.session.listen_port())

    def connect(self, host: str, port: int) -> None:
        self.handle.connect_peer((host, port))

    def release(self) -> None:
        """Start a torrent added with ``paused=True``."""
        self.handle.resume()

    @property
    def errors(self) -> list[str]:
        """Tracker and peer errors libtorrent reported so far (for diagnostics)."""
        self._collect()
        return self._errors

    def _collect(self) -> None:
        for alert in self.session.pop_alerts():
            name = type(alert).__name__
            if "error" in name:
                self._errors.append(f"{name}: {alert.message()}")
            elif name == "tracker_reply_alert":
                self.announces += 1

    async def wait_announced(self) -> None:
        """Return once a tracker has answered an announce of this session."""
        seen = self.announces
        while self.announces == seen:
            await trio.to_thread.run_sync(self.session.wait_for_alert, 100)
            self._collect()

    def is_seeding(self) -> bool:
        status = self.handle.status()
        return bool(status.is_seeding)

    def status(self) -> Any:
        return self.handle.status()

    async def wait_checked(self) -> None:
        """Return once libtorrent has checked the files it found (its resume)."""
        lt = self._lt
        while self.handle.status().state in (
            lt.torrent_status.states.checking_files,
            lt.torrent_status.states.checking_resume_data,
        ):
            await trio.to_thread.run_sync(self.session.wait_for_alert, 100)
            self._collect()

    async def wait_seeding(self) -> None:
        """Return once the torrent is complete (libtorrent verified every piece)."""
        while not self.is_seeding():
            await trio.to_thread.run_sync(self.session.wait_for_alert, 100)
            self._collect()

    async def aclose(self) -> None:
        """Stop the session. Runs in a thread: libtorrent's destructor waits for its
        "stopped" announce, which a tracker in this very trio loop must be free to answer."""
        session = self.session
        handle = self.handle
        self.session = None
        self.handle = None

        def close() -> None:
            nonlocal session, handle
            session.remove_torrent(handle)
            handle = None
            session = None  # the last reference: the destructor runs here

        await trio.to_thread.run_sync(close)
