"""The origin HTTP server: the library over HTTP/1.1 (trio shell).

:class:`OriginApp` is the request handler given to the shared
:class:`~seedcast.http11.HttpServer`. For each request it

1. checks the raw path with :func:`~seedcast.origin.serving.check_target`
   (hostile paths are answered 400/404 and counted by reason);
2. routes it (``/``, ``/healthz``, ``/catalog``, ``/watch/<id>``,
   ``/static/<name>``, ``/<id>/<file>``, ``OPTIONS`` anywhere; 404 / 405
   with ``Allow`` otherwise);
3. for a video file: looks the name up in the :class:`~seedcast.origin.catalog.Catalog`
   (a snapshot of ``index.json``, reloaded when the file changes), ``lstat``s it
   (no symlinks are followed anywhere under the library), lets
   :func:`~seedcast.origin.serving.decide_file` pick 200/206/304/412/416 and
   the headers, and streams the bytes with a :class:`~seedcast.http11.FileBody`
   (sendfile; segments are never read into memory). The stat and the
   complete 200 response (for files of at most 16 KiB -- MPD, init segments
   -- with the bytes) are kept per catalog snapshot under the raw request
   path and re-checked every second, and ``index.json`` is stat'ed at most
   every :data:`INDEX_RECHECK_SECONDS` on that path, so the common request
   costs two dict lookups and no syscall before the send. A path not seen
   before always re-reads the index first, so a video published while the
   server runs is served at once; a rename, removal or republish of a video
   already being served is noticed within :data:`INDEX_RECHECK_SECONDS`;
4. adds ``X-Served-By: <name>`` to every response.

Hostile paths are counted per reason in ``seedcast_origin_refused_paths_total``
and logged once per reason at INFO (then at DEBUG), so an attack cannot flood the log.

Viewers: the watch page and ``/catalog`` set a ``seedcast_viewer`` cookie on
a first visit; every request carrying the cookie counts towards the
unique-viewers metric. Media responses never set cookies, so edges can cache them.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import random
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from seedcast.config import ClusterConfig
from seedcast.http11 import FileBody, Headers, HttpServer, Request, Response, Router
from seedcast.origin.catalog import Catalog
from seedcast.origin.library import Library
from seedcast.origin.serving import (
    ALLOW,
    CORS_HEADERS,
    PREFLIGHT_HEADERS,
    FileFacts,
    PathRefused,
    ViewerTracker,
    check_target,
    decide_file,
    viewer_cookie,
)

__all__ = ["OriginApp", "OriginStatistics", "find_dashjs", "serve", "serve_origin_role"]

log = logging.getLogger("seedcast.origin")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DASHJS_NAME = "dash.all.min.js"
_DASHJS_IN_PACKAGE = (
    "dist/modern/umd/dash.all.min.js",
    "dist/legacy/umd/dash.all.min.js",
    "dist/dash.all.min.js",
)
_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
NO_STORE = "no-store"
FILE_RECHECK_SECONDS = 1.0
"""How long a file's lstat is trusted (symlink and replacement checks) within one catalog."""
INDEX_RECHECK_SECONDS = 0.02
"""How long index.json's stat is trusted when answering a path already served from this
catalog (renames and removals show within this; paths not seen before re-check at once)."""
MAX_CACHED_FILES = 100_000
SMALL_FILE_BYTES = 16 * 1024
"""Files up to this size (MPDs, init segments, torrents of short videos) are kept in memory
with their validated stat and sent with one write; larger ones are always streamed from disk."""
_OWN_PREFIXES = frozenset({"watch", "static"})
_CONDITIONAL_HEADERS = frozenset(
    {"range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"}
)


@dataclass(slots=True)
class _FileState:
    path: str
    kind: str
    content_type: str
    cache_control: str
    facts: FileFacts
    headers: Headers
    """The complete header set of a plain 200 (shared between responses; never mutated)."""
    checked_at: float
    response: Response
    """The plain 200 (headers and body shared by every such answer; never mutated)."""
    content: bytes | None = None
    """The file's bytes when it is small (read once per version of the file)."""


def find_dashjs(configured: str = "") -> Path | None:
    """Where dash.all.min.js is, or None.

    A configured path (``origin.dashjs``, else ``$SEEDCAST_DASHJS``) is used
    alone: the file itself or the dashjs package folder. Without one, look for
    ``node_modules/dashjs`` next to the source tree, then in the current folder.
    """
    named = configured or os.environ.get("SEEDCAST_DASHJS", "")
    if named:
        candidates = [Path(named)]
    else:
        repo = Path(__file__).resolve().parents[3]
        candidates = [repo / "node_modules" / "dashjs", Path.cwd() / "node_modules" / "dashjs"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            for inner in (*_DASHJS_IN_PACKAGE, DASHJS_NAME):
                if (candidate / inner).is_file():
                    return candidate / inner
    return None


@dataclass(frozen=True, slots=True)
class OriginStatistics:
    videos: int
    library_bytes: int
    unique_viewers: int
    viewer_cookies_issued: int
    refused_paths: Mapping[str, int]
    files_served: Mapping[str, int]
    bytes_served: Mapping[str, int]
    not_modified: int
    partial: int
    redirects: int
    index_reloads: int


@dataclass(slots=True)
class _Counters:
    refused: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    not_modified: int = 0
    partial: int = 0
    redirects: int = 0
    reloads: int = 0


class OriginApp:
    """The origin's request handler; see the module docstring."""

    def __init__(
        self,
        library: Library,
        *,
        name: str = "origin",
        manifest_max_age: float = 2.0,
        segment_max_age: float = 31536000.0,
        dashjs: Path | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.library = library
        self.clock = clock
        """Seconds, for the stat re-check windows (tests pass their own)."""
        self.name = name
        self.dashjs = dashjs
        self.viewers = ViewerTracker(rng or random.Random())
        self._counters = _Counters()
        self._manifest_cache = f"public, max-age={int(manifest_max_age)}"
        self._segment_cache = f"public, max-age={int(segment_max_age)}, immutable"
        self._catalog = Catalog.empty()
        self._index_stamp: tuple[int, int, int] | None = None
        self._index_checked_at = -math.inf
        self._files: dict[tuple[str, str], _FileState] = {}
        self._paths: dict[str, _FileState] = {}
        """Raw request path -> the file it named, for paths already served from this catalog."""
        self._root = str(library.root)
        self._index_path = str(library.index_path)
        self._served_by = ("X-Served-By", name)
        self.router = Router()
        self.router.add("GET", "/", self._home)
        self.router.add("GET", "/healthz", self._healthz)
        self.router.add("GET", "/catalog", self._catalog_json)
        self.router.add("GET", "/watch/{video_id}", self._watch)
        self.router.add("GET", "/static/{name}", self._static)
        self.router.add("GET", "/{video_id}/{name}", self._file)
        self.router.add("GET", "/{video_id}", self._video_root)

    # --- the handler ------------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        method = request.method
        if method == "GET" or method == "HEAD":
            # The hot path: a file already served from this catalog (its path was checked then).
            state = self._paths.get(request.raw_path)
            if state is not None:
                now = self.clock()
                if (
                    now - state.checked_at < FILE_RECHECK_SECONDS
                    and now - self._index_checked_at < INDEX_RECHECK_SECONDS
                ):
                    return self._answer_file(request, state)
        check = check_target(request.raw_path)
        segments = check.segments
        if check.refused is not None:
            response = self._refuse(check.refused, request)
        elif (
            len(segments) == 2
            and request.method in ("GET", "HEAD")
            and segments[0] not in _OWN_PREFIXES
        ):
            # A video file: its responses come with every header.
            return self._serve_file(request, segments[0], segments[1])
        elif request.method == "OPTIONS":  # CORS preflight, for any path
            response = Response(204, list(PREFLIGHT_HEADERS))
        else:
            response = await self.router(request)
            if response.status == 405:
                response.headers.set("Allow", ALLOW)
        return self._finish(response)

    def _finish(self, response: Response) -> Response:
        """Add X-Served-By and the CORS headers to a response built without them."""
        headers = response.headers
        headers.add(*self._served_by)
        if "access-control-allow-origin" not in headers:
            for key, value in CORS_HEADERS:
                headers.add(key, value)
        return response

    def _refuse(self, reason: PathRefused, request: Request) -> Response:
        seen = self._counters.refused.get(reason.value, 0)
        self._counters.refused[reason.value] = seen + 1
        log.log(
            logging.DEBUG if seen else logging.INFO,
            "refused path",
            extra={
                "fields": {
                    "reason": reason.value,
                    "client": request.client[0],
                    "path": request.raw_path[:200],
                    "count": seen + 1,
                }
            },
        )
        status = reason.status
        message = "not found\n" if status == 404 else f"bad request: {reason.value}\n"
        return Response.text(status, message, [("Cache-Control", NO_STORE)])

    # --- catalog ----------------------------------------------------------------------------

    def catalog(self) -> Catalog:
        """The current catalog; re-read when index.json changed (one stat per call)."""
        self._index_checked_at = self.clock()
        try:
            info = os.stat(self._index_path)
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        except OSError:
            stamp = (0, 0, 0)
        if stamp != self._index_stamp:
            try:
                self._catalog = Catalog(self.library.read_index()) if stamp[0] else Catalog.empty()
                self._index_stamp = stamp
                self._files.clear()
                self._paths.clear()
                self._counters.reloads += 1
            except Exception as error:  # keep serving the last good catalog
                log.warning("library index unreadable", extra={"fields": {"error": str(error)}})
        return self._catalog

    # --- routes -----------------------------------------------------------------------------

    async def _file(self, request: Request) -> Response:
        """Router entry for ``/<id>/<name>``: only reached to answer 405 for other methods."""
        return _not_found()  # pragma: no cover (GET and HEAD take the fast path)

    def _file_state(
        self, catalog: Catalog, video_id: str, name: str
    ) -> _FileState | PathRefused | None:
        """What to send for a video file: cached per catalog snapshot, re-checked every second."""
        key = (video_id, name)
        now = self.clock()
        state = self._files.get(key)
        if state is not None and now - state.checked_at < FILE_RECHECK_SECONDS:
            return state
        served = catalog.served_file(video_id, name)
        if served is None:
            return None
        folder = f"{self._root}/{video_id}"
        path = f"{folder}/{name}"
        try:
            folder_info = os.lstat(folder)
            info = os.lstat(path)
        except OSError:
            self._forget(key)
            return None
        if stat.S_ISLNK(folder_info.st_mode) or stat.S_ISLNK(info.st_mode):
            self._forget(key)
            return PathRefused.SYMLINK
        if not stat.S_ISDIR(folder_info.st_mode) or not stat.S_ISREG(info.st_mode):
            self._forget(key)
            return None
        facts = FileFacts(
            size=info.st_size, mtime=info.st_mtime, inode=info.st_ino, mtime_ns=info.st_mtime_ns
        )
        if state is not None and state.facts == facts:
            state.checked_at = now
            return state
        cache_control = self._segment_cache if served.immutable else self._manifest_cache
        full = decide_file(
            "GET", {}, facts, content_type=served.content_type, cache_control=cache_control
        )
        kind = (
            "segment" if served.immutable else ("manifest" if name.endswith(".mpd") else "torrent")
        )
        content = _read_small(path, facts) if facts.size <= SMALL_FILE_BYTES else None
        headers = Headers([*full.headers, self._served_by])
        body = content if content is not None else FileBody(path, 0, facts.size)
        state = _FileState(
            content=content,
            path=path,
            kind=kind,
            content_type=served.content_type,
            cache_control=cache_control,
            facts=facts,
            headers=headers,
            checked_at=now,
            response=Response(200, headers, body),
        )
        if len(self._files) >= MAX_CACHED_FILES:
            self._files.clear()
            self._paths.clear()
        self._forget(key)
        self._files[key] = state
        return state

    def _forget(self, key: tuple[str, str]) -> None:
        """Drop a file's state; raw paths still naming it fail the hot path's freshness check."""
        old = self._files.pop(key, None)
        if old is not None:
            old.checked_at = -math.inf  # the next request for such a path re-checks and replaces it

    def _serve_file(self, request: Request, video_id: str, name: str) -> Response:
        catalog = self.catalog()
        moved = catalog.renamed_to(video_id)
        if moved is not None:
            return self._finish(self._redirect(f"/{moved}/{name}", request))
        state = self._file_state(catalog, video_id, name)
        if state is None:
            return self._finish(_not_found())
        if isinstance(state, PathRefused):
            return self._finish(self._refuse(state, request))
        if "%" not in request.raw_path and len(self._paths) < MAX_CACHED_FILES:
            # Only plain spellings: escaped ones (any number per file) take the slow path.
            self._paths[request.raw_path] = state
        return self._answer_file(request, state)

    def _answer_file(self, request: Request, state: _FileState) -> Response:
        """The response for a checked, current file: prepared, or decided per its headers."""
        counters = self._counters
        conditional = False
        for key, value in request.headers.items():
            lowered = key.lower()
            if lowered in _CONDITIONAL_HEADERS:
                conditional = True
            elif lowered == "cookie":
                self.viewers.note([value])
        if not conditional:  # the common case: the whole file, prepared headers
            counters.files[state.kind] = counters.files.get(state.kind, 0) + 1
            if request.method == "GET":
                counters.bytes[state.kind] = counters.bytes.get(state.kind, 0) + state.facts.size
            return state.response
        decision = decide_file(
            request.method,
            request.headers.get,
            state.facts,
            content_type=state.content_type,
            cache_control=state.cache_control,
        )
        if decision.status == 304:
            counters.not_modified += 1
        elif decision.status == 206:
            counters.partial += 1
        headers = Headers([*decision.headers, self._served_by])
        if not decision.has_body:
            return Response(decision.status, headers)
        counters.files[state.kind] = counters.files.get(state.kind, 0) + 1
        if request.method == "GET":
            counters.bytes[state.kind] = counters.bytes.get(state.kind, 0) + decision.length
        if state.content is not None:
            end = decision.offset + decision.length
            return Response(decision.status, headers, state.content[decision.offset : end])
        return Response(
            decision.status, headers, FileBody(state.path, decision.offset, decision.length)
        )

    async def _video_root(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        catalog = self.catalog()
        moved = catalog.renamed_to(video_id)
        if moved is not None:
            return self._redirect(f"/{moved}/", request)
        if catalog.video(video_id) is not None:
            return self._redirect(f"/watch/{video_id}", request, permanent=False)
        return _not_found()

    def _redirect(self, location: str, request: Request, *, permanent: bool = True) -> Response:
        self._counters.redirects += 1
        if request.query:
            location = f"{location}?{request.query}"
        status = 301 if permanent else 302
        return Response.text(
            status,
            f"moved to {location}\n",
            [
                ("Location", location),
                ("Cache-Control", "public, max-age=3600" if permanent else "no-cache"),
            ],
        )

    async def _healthz(self, request: Request) -> Response:
        catalog = self.catalog()
        return Response.json(
            200,
            {"status": "ok", "name": self.name, "videos": len(catalog)},
            [("Cache-Control", NO_STORE)],
        )

    def _viewer_headers(self, request: Request) -> list[tuple[str, str]]:
        viewer, new = self.viewers.observe(request.headers.get_all("cookie"))
        return [("Set-Cookie", viewer_cookie(viewer))] if new else []

    async def _catalog_json(self, request: Request) -> Response:
        headers = [("Cache-Control", "no-cache"), *self._viewer_headers(request)]
        return Response.json(200, self.catalog().to_json(), headers)

    async def _home(self, request: Request) -> Response:
        catalog = self.catalog()
        items = (
            "\n".join(_home_item(entry) for entry in catalog.to_json()["videos"])
            or "<li>no videos yet: <code>seedcast publish FILE --id ID</code></li>"
        )
        page = (
            "<!doctype html><meta charset=utf-8><title>Seedcast videos</title>"
            f"<h1>Seedcast videos</h1><p>served by {html.escape(self.name)}</p><ul>{items}</ul>"
            '<p><a href="/catalog">catalog (JSON)</a> · <a href="/metrics">metrics</a></p>'
        )
        return Response.text(
            200, page, [("Cache-Control", "no-cache")], content_type="text/html; charset=utf-8"
        )

    async def _watch(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        catalog = self.catalog()
        moved = catalog.renamed_to(video_id)
        if moved is not None:
            return self._redirect(f"/watch/{moved}", request)
        entry = catalog.video(video_id)
        if entry is None:
            return _not_found(f"no video {video_id!r} here (see /catalog)\n")
        headers = [("Cache-Control", "no-cache"), *self._viewer_headers(request)]
        if self.dashjs is None or not self.dashjs.is_file():
            return Response.text(
                503, _dashjs_missing_page(), headers, content_type="text/html; charset=utf-8"
            )
        template = (STATIC_DIR / "watch.html").read_text(encoding="utf-8")
        manifest = json.dumps(f"/{video_id}/{entry.manifest}").replace("</", "<\\/")
        page = (
            template.replace("{{TITLE}}", html.escape(entry.title))
            # The id under the title only when it says something the title doesn't.
            .replace("{{VIDEO_ID}}", "" if entry.title == video_id else html.escape(video_id))
            .replace("{{MANIFEST_JSON}}", manifest)
        )
        return Response.text(200, page, headers, content_type="text/html; charset=utf-8")

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == DASHJS_NAME:
            if self.dashjs is None or not self.dashjs.is_file():
                return Response.text(
                    404,
                    "// dash.js is not installed: run `npm install` in the Seedcast folder\n"
                    "// (it puts dashjs in node_modules/), or set origin.dashjs in the config.\n",
                    [("Cache-Control", NO_STORE)],
                    content_type="text/javascript; charset=utf-8",
                )
            path = self.dashjs
        else:
            path = STATIC_DIR / name
            if name.endswith(".html") or not path.is_file():
                return _not_found()
        content_type = _STATIC_TYPES.get(path.suffix, "application/octet-stream")
        info = os.stat(path)
        decision = decide_file(
            request.method,
            request.headers.get,
            FileFacts(
                size=info.st_size, mtime=info.st_mtime, inode=info.st_ino, mtime_ns=info.st_mtime_ns
            ),
            content_type=content_type,
            cache_control="public, max-age=3600",
        )
        if not decision.has_body:
            return Response(decision.status, decision.headers)
        return Response(
            decision.status, decision.headers, FileBody(path, decision.offset, decision.length)
        )

    # --- statistics -------------------------------------------------------------------------

    def statistics(self) -> OriginStatistics:
        catalog_stats = self.catalog().statistics()
        counters = self._counters
        return OriginStatistics(
            videos=catalog_stats["videos"],
            library_bytes=catalog_stats["bytes"],
            unique_viewers=self.viewers.unique,
            viewer_cookies_issued=self.viewers.issued,
            refused_paths=dict(counters.refused),
            files_served=dict(counters.files),
            bytes_served=dict(counters.bytes),
            not_modified=counters.not_modified,
            partial=counters.partial,
            redirects=counters.redirects,
            index_reloads=counters.reloads,
        )


def _home_item(entry: Mapping[str, Any]) -> str:
    watch = html.escape(f"/watch/{entry['id']}")
    manifest = html.escape(entry["manifest"])
    return (
        f'<li><a href="{watch}">{html.escape(entry["title"])}</a> '
        f'({entry["duration"]:.0f} s) · <a href="{manifest}">MPD</a></li>'
    )


def _read_small(path: str, facts: FileFacts) -> bytes | None:
    """The bytes of a small file, if it still is the file ``facts`` describe (else None)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if (info.st_ino, info.st_size, info.st_mtime_ns) != (
            facts.inode,
            facts.size,
            facts.mtime_ns,
        ):
            return None
        data = os.pread(descriptor, facts.size + 1, 0)
    finally:
        os.close(descriptor)
    return data if len(data) == facts.size else None


def _not_found(message: str = "not found\n") -> Response:
    return Response.text(404, message, [("Cache-Control", "no-cache")])


def _dashjs_missing_page() -> str:
    return (
        "<!doctype html><meta charset=utf-8><title>dash.js missing</title>"
        "<h1>The player needs dash.js</h1>"
        "<p>dash.js is not installed. Run <code>npm install</code> in the Seedcast folder "
        "(it reads <code>package.json</code> and puts dash.js in <code>node_modules/</code>), "
        "or point <code>origin.dashjs</code> in the cluster config at "
        "<code>dash.all.min.js</code>. Then reload this page.</p>"
        "<p>The video itself is served anyway: open the MPD in any DASH player "
        "(<code>mpv</code>, <code>ffplay</code>).</p>"
    )


# --- metrics ------------------------------------------------------------------------------


def origin_metrics(app: OriginApp) -> Iterable[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    stats = app.statistics()
    yield GaugeMetricFamily("seedcast_origin_videos", "Videos in the library", value=stats.videos)
    yield GaugeMetricFamily(
        "seedcast_origin_library_bytes", "Bytes of published media", value=stats.library_bytes
    )
    yield GaugeMetricFamily(
        "seedcast_origin_unique_viewers",
        "Distinct viewer cookies seen since start",
        value=stats.unique_viewers,
    )
    yield CounterMetricFamily(
        "seedcast_origin_viewer_cookies_issued",
        "Viewer cookies handed to first-time visitors",
        value=stats.viewer_cookies_issued,
    )
    refused = CounterMetricFamily(
        "seedcast_origin_refused_paths",
        "Request paths refused as hostile (traversal, bad escapes, symlinks...)",
        labels=["reason"],
    )
    for reason in PathRefused:
        refused.add_metric([reason.value], stats.refused_paths.get(reason.value, 0))
    yield refused
    files = CounterMetricFamily(
        "seedcast_origin_files_served", "Media files answered with a body", labels=["kind"]
    )
    sent = CounterMetricFamily(
        "seedcast_origin_file_bytes", "Media bytes sent (GET bodies)", labels=["kind"]
    )
    for kind in ("manifest", "segment", "torrent"):
        files.add_metric([kind], stats.files_served.get(kind, 0))
        sent.add_metric([kind], stats.bytes_served.get(kind, 0))
    yield files
    yield sent
    yield CounterMetricFamily(
        "seedcast_origin_not_modified", "304 answers to conditional GETs", value=stats.not_modified
    )
    yield CounterMetricFamily(
        "seedcast_origin_partial_content", "206 answers to Range requests", value=stats.partial
    )
    yield CounterMetricFamily(
        "seedcast_origin_redirects", "301 answers for renamed videos", value=stats.redirects
    )


# --- running ------------------------------------------------------------------------------


def build_origin(
    config: ClusterConfig,
    name: str,
    *,
    registry: Any = None,
    rng: random.Random | None = None,
) -> tuple[OriginApp, HttpServer]:
    """The app and its HTTP server (not yet listening)."""
    from seedcast.metrics import StatisticsCollector, new_registry

    library = Library.for_data_dir(config.data_dir)
    library.repair()
    registry = registry if registry is not None else new_registry("origin", name)
    app = OriginApp(
        library,
        name=name,
        manifest_max_age=config.origin.manifest_max_age,
        segment_max_age=config.origin.segment_max_age,
        dashjs=find_dashjs(config.origin.dashjs),
        rng=rng,
    )
    StatisticsCollector(registry, lambda: origin_metrics(app))
    from seedcast.ratelimit import TokenBucket

    upload = config.origin.upload
    server = HttpServer(
        app,
        registry=registry,
        component="origin",
        upload_limit=TokenBucket(upload) if upload > 0 else None,
    )
    return app, server


async def serve(
    config: ClusterConfig,
    name: str = "origin",
    *,
    listen: str | None = None,
    on_ready: Callable[[OriginApp, HttpServer], None] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the library of ``config.data_dir`` on ``listen`` (default: origin.listen).

    Calls ``task_status.started(["host:port"])`` once listening (port 0 picks one).
    """
    app, server = build_origin(config, name)
    if on_ready is not None:
        on_ready(app, server)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(server.serve, [listen or config.origin.listen])
        addresses = [f"{host}:{port}" for host, port in bound]
        log.info(
            "origin serving",
            extra={
                "fields": {
                    "addresses": ",".join(addresses),
                    "videos": len(app.catalog()),
                    "dashjs": str(app.dashjs or "missing"),
                }
            },
        )
        task_status.started(addresses)


def serve_origin_role(
    config: ClusterConfig, *, name: str, listen: str | None, debug: bool = False
) -> int:
    """``seedcast origin``: run :func:`serve` as a role (logging, signals, control channel)."""
    from seedcast.roles import run_role
    from seedcast.units import parse_host_port

    if listen:
        try:
            parse_host_port(listen)
        except ValueError as error:
            from seedcast.errors import UsageError

            raise UsageError(f"--listen: {error}") from None
    holder: dict[str, OriginApp] = {}

    async def serve_fn(task_status: Any) -> None:
        await serve(
            config,
            name,
            listen=listen,
            on_ready=lambda app, server: holder.__setitem__("app", app),
            task_status=task_status,
        )

    def statistics() -> dict[str, float | int | str]:
        app = holder.get("app")
        if app is None:
            return {}
        stats = app.statistics()
        return {
            "videos": stats.videos,
            "unique_viewers": stats.unique_viewers,
            "refused_paths": sum(stats.refused_paths.values()),
            "segments_served": stats.files_served.get("segment", 0),
        }

    started = time.monotonic()
    code = run_role(
        role="origin", name=name, config=config, serve=serve_fn, statistics=statistics, debug=debug
    )
    log.debug("origin stopped", extra={"fields": {"uptime": round(time.monotonic() - started, 1)}})
    return code
