"""Real players through a viewer agent (and an edge): ffmpeg, mpv, Chromium with dash.js.

One cluster of real processes (origin, an edge, DNS, tracker, a seeding
peer) and one viewer agent serve a 12 s sample. Each player is a real
third-party client pointed at the agent's URL: it must decode or play the
stream, and the agent must have served it. Chromium is driven over the
DevTools protocol (a small CDP client on trio-websocket): it opens the
origin's ``/watch/sample`` page through the agent, and dash.js plays it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from seedcast.testing.streaming import StreamingCluster, Viewer, published_library

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
MPV = "/usr/bin/mpv"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamingCluster]:
    library = published_library(tmp_path_factory.getbasetemp() / "agent-library", seconds=12)
    folder = tmp_path_factory.mktemp("players-cluster")
    with StreamingCluster(folder, library, block=230, edges=1) as started:
        yield started


@pytest.fixture(scope="module")
def viewer(cluster: StreamingCluster) -> Viewer:
    return cluster.start_viewer(1, "eu")


def media_bytes(viewer: Viewer) -> int:
    figures = viewer.health()
    return int(figures["bytes_peer"]) + int(figures["bytes_edge"]) + int(figures["bytes_origin"])


def test_ffmpeg_decodes_the_stream_through_an_agent(viewer: Viewer) -> None:
    import imageio_ffmpeg

    before = media_bytes(viewer)
    result = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-nostdin",
            "-v",
            "error",
            "-i",
            viewer.manifest_url,
            "-map",
            "0:v:0",
            "-map",
            "0:a:0",
            "-f",
            "framemd5",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    frames = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    video_frames = [line for line in frames if line.startswith("0,")]
    audio_frames = [line for line in frames if line.startswith("1,")]
    assert len(video_frames) >= 30 * 12 - 2  # every frame of the 12 s at 30 fps decoded
    assert audio_frames
    assert media_bytes(viewer) > before


def run_mpv(url: str, seconds: float = 4.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            MPV,
            "--no-config",
            "--vo=null",
            "--ao=null",
            f"--length={seconds:g}",
            "--msg-level=all=status",
            "--term-status-msg=",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which(MPV) is None, reason=f"{MPV} is not installed (Debian: mpv)")
def test_mpv_plays_through_an_agent_and_through_an_edge(
    cluster: StreamingCluster, viewer: Viewer
) -> None:
    before = media_bytes(viewer)
    through_agent = run_mpv(viewer.manifest_url)
    assert through_agent.returncode == 0, through_agent.stderr + through_agent.stdout
    assert "Exiting... (End of file)" in through_agent.stdout + through_agent.stderr
    assert "Video" in through_agent.stdout
    assert "Audio" in through_agent.stdout
    assert media_bytes(viewer) > before
    through_edge = run_mpv(f"http://{cluster.edge_address(1)}/sample/manifest.mpd")
    assert through_edge.returncode == 0, through_edge.stderr + through_edge.stdout
    assert "Exiting... (End of file)" in through_edge.stdout + through_edge.stderr


# -- Chromium over the DevTools protocol ------------------------------------------------------


class Cdp:
    """A minimal Chrome DevTools Protocol client: commands in, results out, events skipped."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._ids = itertools.count(1)

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.connection.send_message(json.dumps(message))
        while True:
            reply = json.loads(await self.connection.get_message())
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", session, expression=expression, returnByValue=True
        )
        return result.get("result", {}).get("value")


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Cdp]:
    from trio_websocket import open_websocket_url

    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        port_file = profile / "DevToolsActivePort"
        with trio.fail_after(30):
            while not port_file.is_file() or len(port_file.read_text().split()) < 2:  # noqa: ASYNC110 - the browser writes it when ready; no event to wait on
                await trio.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        async with open_websocket_url(
            f"ws://127.0.0.1:{port}{path}", max_message_size=64 * 1024 * 1024
        ) as connection:
            yield Cdp(connection)
    finally:
        process.terminate()
        with trio.move_on_after(10) as waited:
            await process.wait()
        if waited.cancelled_caught:
            process.kill()
            await process.wait()


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed (Debian: chromium)"
)
async def test_chromium_with_dashjs_plays_the_watch_page_through_an_agent(
    viewer: Viewer, tmp_path: Path
) -> None:
    before = await trio.to_thread.run_sync(lambda: media_bytes(viewer))
    async with chromium(tmp_path / "profile") as cdp:
        target = await cdp.call("Target.createTarget", url="about:blank")
        attached = await cdp.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        session = attached["sessionId"]
        await cdp.call("Page.enable", session)
        await cdp.call("Runtime.enable", session)
        # Record every error dash.js or the media element reports, from the first script on.
        await cdp.call(
            "Page.addScriptToEvaluateOnNewDocument",
            session,
            source=(
                "window.__errors = [];"
                "window.addEventListener('error', e => window.__errors.push(String(e.message)),"
                " true);"
            ),
        )
        await cdp.call("Page.navigate", session, url=f"{viewer.url}/watch/sample")
        probe = (
            "JSON.stringify((() => { const v = document.querySelector('video');"
            " const box = document.getElementById('error');"
            " return {time: v ? v.currentTime : -1, mediaError: v && v.error ? v.error.code : 0,"
            " pageError: box ? box.textContent : '',"
            " errors: window.__errors || [],"
            " servedBy: (document.getElementById('served-by') || {}).textContent}; })())"
        )
        state: dict[str, Any] = {}
        with trio.fail_after(40):
            while True:
                state = json.loads(await cdp.evaluate(session, probe) or "{}")
                assert not state.get("pageError"), state
                assert not state.get("mediaError"), state
                if state.get("time", 0) >= 5.0:
                    break
                await trio.sleep(0.25)  # playback time moves with the clock
        await cdp.call("Browser.close")
    assert state["errors"] == [], state
    # dash.js read the agent's X-Served-By on the segments it loaded.
    assert state["servedBy"] == viewer.name, state
    after = await trio.to_thread.run_sync(lambda: media_bytes(viewer))
    assert after > before
