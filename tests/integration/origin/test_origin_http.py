"""The origin server over real loopback sockets, spoken to with raw HTTP/1.1 bytes.

The library here is synthetic (segments are patterned bytes, not video), made
through the Library API, so every HTTP behaviour is checked exactly and fast.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from seedcast.origin.app import OriginApp
from seedcast.origin.files import INDEX_RECHECK_SECONDS
from seedcast.origin.library import Library
from seedcast.origin.server import serve
from seedcast.testing.origin import SEGMENT_SIZE, config_for, segment_bytes, write_synthetic_video
from seedcast.testing.origin import SYNTHETIC_VERSION as VERSION

SECRET = b"TOP-SECRET-MARKER-6f1d"
DASHJS_STANDIN = b"/* stand-in for dash.js */ var dashjs = {};\n"


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class RawConnection:
    """One TCP connection; requests are raw bytes, responses parsed just enough to check."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buffer += chunk

    async def read_response(self, *, head: bool = False) -> RawResponse:
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        head_bytes, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in lines[1:]]
        response = RawResponse(status, headers, b"")
        length = (
            0
            if head or status in (204, 304) or status < 200
            else int(response.header("content-length") or 0)
        )
        while len(self.buffer) < length:
            await self._fill()
        response.body, self.buffer = self.buffer[:length], self.buffer[length:]
        return response

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)


@dataclass
class Origin:
    host: str
    port: int
    app: OriginApp
    library: Library
    data_dir: Path

    @functools.cached_property
    def secret(self) -> Path:
        path = self.data_dir / "secret.txt"
        path.write_bytes(SECRET)
        return path

    async def connect(self) -> RawConnection:
        return RawConnection(await trio.open_tcp_stream(self.host, self.port))

    async def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, *, body: bytes = b""
    ) -> RawResponse:
        connection = await self.connect()
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}", "Connection: close"]
        lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        await connection.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        with trio.fail_after(10):
            response = await connection.read_response(head=method == "HEAD")
        await connection.stream.aclose()
        return response

    async def get(self, target: str, **headers: str) -> RawResponse:
        return await self.request(
            "GET", target, {k.replace("_", "-"): v for k, v in headers.items()}
        )

    async def metrics(self) -> str:
        return (await self.get("/metrics")).body.decode()


async def start_origin(nursery: trio.Nursery, data_dir: Path, *, dashjs: str = "") -> Origin:
    library = Library(data_dir / "library")
    config = config_for(data_dir)
    config = dataclasses.replace(config, origin=dataclasses.replace(config.origin, dashjs=dashjs))
    holder: dict[str, OriginApp] = {}
    addresses = await nursery.start(
        functools.partial(
            serve,
            config,
            "origin-test",
            listen="127.0.0.1:0",
            on_ready=lambda app, server: holder.__setitem__("app", app),
        )
    )
    host, port = addresses[0].rsplit(":", 1)
    return Origin(host, int(port), holder["app"], library, data_dir)


@pytest.fixture
def dashjs_file(tmp_path: Path) -> Path:
    path = tmp_path / "dash.all.min.js"
    path.write_bytes(DASHJS_STANDIN)
    return path


@pytest.fixture
async def origin(tmp_path: Path, nursery: trio.Nursery, dashjs_file: Path) -> Origin:
    data_dir = tmp_path / "data"
    write_synthetic_video(Library(data_dir / "library"), "movie")
    return await start_origin(nursery, data_dir, dashjs=str(dashjs_file))


def _metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = (
        re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" (\S+)"
    )
    match = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    assert match, f"{name} {labels} not in metrics"
    return float(match.group(1))


CHUNK = f"/movie/chunk-{VERSION}-0-00002.m4s"
AUDIO_CHUNK = f"/movie/chunk-{VERSION}-1-00001.m4s"


# --- GET / HEAD ----------------------------------------------------------------------------


async def test_manifest_segments_and_torrent_headers(origin: Origin) -> None:
    expectations = {
        "/movie/manifest.mpd": ("application/dash+xml", "public, max-age=2"),
        CHUNK: ("video/mp4", "public, max-age=31536000, immutable"),
        f"/movie/init-{VERSION}-0.m4s": ("video/mp4", "public, max-age=31536000, immutable"),
        AUDIO_CHUNK: ("audio/mp4", "public, max-age=31536000, immutable"),
        f"/movie/init-{VERSION}-1.m4s": ("audio/mp4", "public, max-age=31536000, immutable"),
        "/movie/movie.torrent": ("application/x-bittorrent", "public, max-age=2"),
    }
    for target, (content_type, cache_control) in expectations.items():
        response = await origin.get(target)
        path = origin.library.root / target.lstrip("/")
        assert response.status == 200, target
        assert response.body == path.read_bytes()
        assert response.header("content-type") == content_type
        assert response.header("content-length") == str(path.stat().st_size)
        assert response.header("cache-control") == cache_control
        etag = response.header("etag")
        assert etag is not None
        assert etag.startswith('"')
        assert not etag.startswith("W/")
        assert (
            response.header(
                "last-modified",
            )
            is not None
        )
        assert response.header("last-modified").endswith("GMT")  # type: ignore[union-attr]
        assert response.header("accept-ranges") == "bytes"
        assert response.header("access-control-allow-origin") == "*"
        assert "X-Served-By" in (response.header("access-control-expose-headers") or "")
        assert response.header("x-served-by") == "origin-test"
        assert response.header("set-cookie") is None  # media is cacheable: no cookies
        head = await origin.request("HEAD", target)
        assert head.status == 200
        assert head.body == b""
        for name in ("content-type", "content-length", "etag", "last-modified", "cache-control"):
            assert head.header(name) == response.header(name), name


async def test_conditional_get(origin: Origin) -> None:
    first = await origin.get(CHUNK)
    etag, modified = first.header("etag"), first.header("last-modified")
    assert etag
    assert modified
    for headers in (
        {"if_none_match": etag},
        {"if_modified_since": modified},
        {"if_none_match": f'"x", W/{etag}'},
    ):
        connection = await origin.connect()
        lines = [f"GET {CHUNK} HTTP/1.1", "Host: x"] + [
            f"{key.replace('_', '-')}: {value}" for key, value in headers.items()
        ]
        await connection.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = await connection.read_response()
        assert response.status == 304
        assert response.body == b""
        assert connection.buffer == b""
        assert response.header("etag") == etag
        assert response.header("content-length") in (None, "0")
        # The connection stays usable after a 304: nothing stray was sent.
        await connection.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await connection.read_response()).status == 200
        await connection.stream.aclose()
    assert (await origin.get(CHUNK, if_none_match='"stale"')).status == 200
    assert (
        await origin.get(CHUNK, if_modified_since="Mon, 01 Jan 2001 00:00:00 GMT")
    ).status == 200
    assert (await origin.get(CHUNK, if_match='"stale"')).status == 412
    text = await origin.metrics()
    assert _metric(text, "seedcast_origin_not_modified_total") == 3


async def test_ranges(origin: Origin) -> None:
    whole = segment_bytes("0", 2)
    single = await origin.get(CHUNK, range="bytes=100-199")
    assert single.status == 206
    assert single.body == whole[100:200]
    assert single.header("content-range") == f"bytes 100-199/{SEGMENT_SIZE}"
    assert single.header("content-length") == "100"
    suffix = await origin.get(CHUNK, range="bytes=-10")
    assert suffix.status == 206
    assert suffix.body == whole[-10:]
    open_ended = await origin.get(CHUNK, range=f"bytes={SEGMENT_SIZE - 5}-")
    assert open_ended.body == whole[-5:]
    unsatisfiable = await origin.get(CHUNK, range=f"bytes={SEGMENT_SIZE}-")
    assert unsatisfiable.status == 416
    assert unsatisfiable.header("content-range") == f"bytes */{SEGMENT_SIZE}"
    multi = await origin.get(CHUNK, range="bytes=0-1,10-11")
    assert multi.status == 200
    assert multi.body == whole
    stale = await origin.get(CHUNK, range="bytes=0-9", if_range='"stale"')
    assert stale.status == 200
    assert stale.body == whole
    etag = single.header("etag")
    fresh = await origin.get(CHUNK, range="bytes=0-9", if_range=etag or "")
    assert fresh.status == 206
    assert fresh.body == whole[:10]
    head = await origin.request("HEAD", CHUNK, {"Range": "bytes=0-9"})
    assert head.status == 200
    assert head.header("content-length") == str(SEGMENT_SIZE)


# --- redirects and errors ------------------------------------------------------------------


async def test_renamed_video_answers_301(origin: Origin) -> None:
    origin.library.rename("movie", "film", retorrent=lambda folder, new_id: ("movie.torrent", ""))
    moved = await origin.get("/movie/manifest.mpd?x=1")
    assert moved.status == 301
    assert moved.header("location") == "/film/manifest.mpd?x=1"
    assert (await origin.get("/watch/movie")).header("location") == "/watch/film"
    assert (await origin.get("/movie")).header("location") == "/film/"
    assert (await origin.get("/film/manifest.mpd")).status == 200
    assert (await origin.get("/film")).status == 302


async def test_a_served_video_renamed_is_noticed_within_the_recheck_window(
    origin: Origin,
) -> None:
    now = [1000.0]
    origin.app.clock = lambda: now[0]
    first = await origin.get("/movie/manifest.mpd")
    again = await origin.get("/movie/manifest.mpd")  # from the prepared response
    assert (first.status, again.status) == (200, 200)
    assert again.body == first.body
    assert [h for h in again.headers if h[0].lower() != "date"] == [
        h for h in first.headers if h[0].lower() != "date"
    ]
    origin.library.rename("movie", "film", retorrent=lambda folder, new_id: ("movie.torrent", ""))
    now[0] += INDEX_RECHECK_SECONDS + 0.001  # well within the 1 s file re-check
    moved = await origin.get("/movie/manifest.mpd")
    assert (moved.status, moved.header("location")) == (301, "/film/manifest.mpd")
    assert (await origin.get("/film/manifest.mpd")).body == first.body


async def test_only_plain_spellings_of_a_path_are_remembered(origin: Origin) -> None:
    spellings = ["/movie/manifest.mpd", "/movie/manifest%2Empd", "/movie/m%61nifest.mpd"]
    for target in spellings * 2:
        assert (await origin.get(target)).status == 200
    assert origin.app.files.remembered_paths() == ["/movie/manifest.mpd"]  # the memory bound holds


@pytest.mark.parametrize(
    "target",
    [
        "/nothing/manifest.mpd",
        "/movie/nothing.m4s",
        "/movie/notes.txt",
        "/movie/video.json",
        "/movie/manifest.mpd/more",
        f"/movie/chunk-{VERSION}-0-00009.m4s",
        "/movie/chunk-ffffffff-0-00001.m4s",
        "/index.json",
        "/static/watch.html",
        "/static/nothing.js",
        "/watch/nothing",
        "/nothing",
    ],
)
async def test_not_found(origin: Origin, target: str) -> None:
    response = await origin.get(target)
    assert response.status == 404
    assert response.header("x-served-by") == "origin-test"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_method_not_allowed(origin: Origin, method: str) -> None:
    for target in ("/movie/manifest.mpd", "/catalog", "/"):
        response = await origin.request(method, target, body=b"x")
        assert response.status == 405
        assert response.header("allow") == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /movie/manifest.mpd HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET /movie/manifest.mpd HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /movie/manifest.mpd HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ],
)
async def test_bad_requests(origin: Origin, raw: bytes) -> None:
    connection = await origin.connect()
    await connection.send(raw)
    with trio.fail_after(10):
        response = await connection.read_response()
    assert 400 <= response.status < 600
    assert response.status != 404
    await connection.stream.aclose()


# --- hostile paths -------------------------------------------------------------------------

HOSTILE_TARGETS = [
    "/../secret.txt",
    "/movie/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/movie/%2e%2e/%2e%2e/secret.txt",
    "/..%2fsecret.txt",
    "/movie/..%2F..%2Fsecret.txt",
    "/%2fetc%2fpasswd",
    "//etc/passwd",
    "/movie//manifest.mpd",
    "/..\\secret.txt",
    "/movie/%5c..%5c..%5csecret.txt",
    "/movie/manifest.mpd%00.m4s",
    "/%00",
    "/movie/%0d%0aSet-Cookie:%20x=1",
    "/movie/%zz",
    "/%c0%ae%c0%ae/secret.txt",
    "/.lock",
    "/.partial-movie-1-aa/manifest.mpd",
    "/movie/.video.json.tmp",
    "/library/index.json/..",
]


async def test_hostile_paths_are_refused_and_counted(origin: Origin) -> None:
    assert origin.secret.exists()
    ours = 0
    for target in HOSTILE_TARGETS:
        response = await origin.get(target)
        assert response.status in (400, 404), target
        assert SECRET not in response.body
        if response.header("x-served-by"):
            ours += 1
    text = await origin.metrics()
    counted = sum(
        float(value)
        for value in re.findall(r"^seedcast_origin_refused_paths_total\{[^}]*\} (\S+)$", text, re.M)
    )
    # Those the HTTP core itself rejects as malformed (e.g. a raw backslash) never reach us.
    assert counted == ours
    assert ours >= len(HOSTILE_TARGETS) - 2
    assert _metric(text, "seedcast_origin_refused_paths_total", reason="dot_segment") >= 3


async def test_symlinks_are_never_followed(origin: Origin, tmp_path: Path) -> None:
    chunk = origin.library.root / CHUNK.lstrip("/")
    chunk.unlink()
    chunk.symlink_to(origin.secret)
    response = await origin.get(CHUNK)
    assert response.status == 404
    assert SECRET not in response.body
    # A whole video folder that is a symlink to somewhere else.
    outside = tmp_path / "outside"
    write_synthetic_video(Library(outside), "evil")
    write_synthetic_video(origin.library, "evil")
    folder = origin.library.root / "evil"
    import shutil

    shutil.rmtree(folder)
    folder.symlink_to(outside / "evil")
    response = await origin.get("/evil/manifest.mpd")
    assert response.status == 404
    text = await origin.metrics()
    assert _metric(text, "seedcast_origin_refused_paths_total", reason="symlink") == 2


# --- CORS, cookies, catalog, pages ---------------------------------------------------------


async def test_cors_preflight(origin: Origin) -> None:
    response = await origin.request(
        "OPTIONS",
        "/movie/manifest.mpd",
        {
            "Origin": "http://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
    )
    assert response.status == 204
    assert response.header("access-control-allow-origin") == "*"
    assert "GET" in (response.header("access-control-allow-methods") or "")
    assert "Range" in (response.header("access-control-allow-headers") or "")
    assert response.header("access-control-max-age") == "86400"
    cross = await origin.get("/movie/manifest.mpd", origin="http://player.example")
    assert cross.header("access-control-allow-origin") == "*"


async def test_viewer_cookie_and_unique_viewers(origin: Origin) -> None:
    first = await origin.get("/watch/movie")
    cookie = first.header("set-cookie")
    assert cookie is not None
    assert cookie.startswith("seedcast_viewer=")
    assert "Path=/" in cookie
    assert "Max-Age=" in cookie
    viewer = cookie.split(";", 1)[0]
    again = await origin.get("/watch/movie", cookie=f"lang=en; {viewer}")
    assert again.header("set-cookie") is None
    segment = await origin.get(CHUNK, cookie=viewer)
    assert segment.header("set-cookie") is None
    text = await origin.metrics()
    assert _metric(text, "seedcast_origin_unique_viewers") == 1
    other = await origin.get("/catalog")
    assert other.header("set-cookie") is not None
    await origin.get(CHUNK, cookie="seedcast_viewer=" + "ab" * 16)
    text = await origin.metrics()
    assert _metric(text, "seedcast_origin_unique_viewers") == 3
    assert _metric(text, "seedcast_origin_viewer_cookies_issued_total") == 2


async def test_catalog_and_healthz(origin: Origin) -> None:
    catalog = await origin.get("/catalog")
    assert catalog.status == 200
    assert catalog.header("content-type") == "application/json"
    body = json.loads(catalog.body)
    (video,) = body["videos"]
    assert video["id"] == "movie"
    assert video["manifest"] == "/movie/manifest.mpd"
    assert video["segment_count"] == 3
    assert video["duration"] == 6.0
    health = await origin.get("/healthz")
    assert health.status == 200
    assert json.loads(health.body)["status"] == "ok"
    assert health.header("cache-control") == "no-store"
    # A video published while the server runs shows up at once.
    write_synthetic_video(origin.library, "second")
    body = json.loads((await origin.get("/catalog")).body)
    assert [video["id"] for video in body["videos"]] == ["movie", "second"]
    assert (await origin.get("/second/manifest.mpd")).status == 200
    home = await origin.get("/")
    assert home.status == 200
    assert b"/watch/second" in home.body


async def test_watch_page_and_dashjs(origin: Origin) -> None:
    page = await origin.get("/watch/movie")
    assert page.status == 200
    assert page.header("content-type") == "text/html; charset=utf-8"
    text = page.body.decode()
    assert '"/movie/manifest.mpd"' in text
    assert "/static/dash.all.min.js" in text
    assert "x-served-by" in text
    assert "getBufferLength" in text
    assert "Synthetic movie" in text
    script = await origin.get("/static/dash.all.min.js")
    assert script.status == 200
    assert script.body == DASHJS_STANDIN
    assert script.header("content-type") == "text/javascript; charset=utf-8"


async def test_missing_dashjs_is_explained(tmp_path: Path, nursery: trio.Nursery) -> None:
    data_dir = tmp_path / "data"
    write_synthetic_video(Library(data_dir / "library"), "movie")
    origin = await start_origin(nursery, data_dir, dashjs=str(tmp_path / "no-such-dir"))
    page = await origin.get("/watch/movie")
    assert page.status == 503
    assert b"npm install" in page.body
    script = await origin.get("/static/dash.all.min.js")
    assert script.status == 404
    assert b"npm install" in script.body


# --- connections and streaming -------------------------------------------------------------


async def test_keep_alive_and_pipelining(origin: Origin) -> None:
    connection = await origin.connect()
    request = f"GET {CHUNK} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    head = b"HEAD /movie/manifest.mpd HTTP/1.1\r\nHost: x\r\n\r\n"
    await connection.send(request + head + request)
    with trio.fail_after(10):
        first = await connection.read_response()
        second = await connection.read_response(head=True)
        third = await connection.read_response()
    assert (first.status, second.status, third.status) == (200, 200, 200)
    assert first.body == third.body == segment_bytes("0", 2)
    assert second.header("content-type") == "application/dash+xml"
    await connection.stream.aclose()


async def test_large_segment_is_streamed_intact(tmp_path: Path, nursery: trio.Nursery) -> None:
    data_dir = tmp_path / "data"
    size = 8 * 1024 * 1024 + 7
    write_synthetic_video(Library(data_dir / "library"), "big", segment_size=size)
    origin = await start_origin(nursery, data_dir)
    expected = segment_bytes("1", 3, size)
    response = await origin.get(f"/big/chunk-{VERSION}-1-00003.m4s")
    assert response.status == 200
    assert len(response.body) == size
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(expected).digest()
    tail = await origin.get(f"/big/chunk-{VERSION}-1-00003.m4s", range=f"bytes={size - 1000}-")
    assert tail.body == expected[-1000:]
    text = await origin.metrics()
    assert _metric(text, "seedcast_origin_file_bytes_total", kind="segment") == size + 1000


async def test_page_titles_say_each_thing_once(origin: Origin) -> None:
    home = (await origin.get("/")).body.decode()
    assert "<h1>Seedcast videos</h1>" in home
    assert "origin origin" not in home
    page = (await origin.get("/watch/movie")).body.decode()
    header = page.split("<header>", 1)[1].split("</header>", 1)[0]
    # the id under the title only where they differ ("sample sample" was the demo's header)
    assert "<h1>Synthetic movie</h1><small>movie</small>" in header
    assert 'href="/"' in header  # the list of videos is a page, not the JSON catalog
