"""The origin's request handler: routing (the trio shell is :mod:`seedcast.origin.server`).

:class:`OriginApp` is the request handler given to the shared
:class:`~seedcast.http11.HttpServer`. For each request it

1. answers a path already served from the current catalog from its prepared
   state (:meth:`~seedcast.origin.files.FileCache.hot`: no syscall before
   the send);
2. else checks the raw path with :func:`~seedcast.origin.serving.check_target`
   (hostile paths are answered 400/404 and counted by reason);
3. routes it (``/``, ``/healthz``, ``/catalog``, ``/watch/<id>``,
   ``/static/<name>``, ``/<id>/<file>``, ``OPTIONS`` anywhere; 404 / 405
   with ``Allow`` otherwise). A video file is looked up in the
   :class:`~seedcast.origin.catalog.Catalog` (a snapshot of ``index.json``,
   reloaded when the file changes) and in the
   :class:`~seedcast.origin.files.FileCache`; a request with conditionals or
   Range is decided by :func:`~seedcast.origin.serving.decide_file` and the
   bytes stream with a :class:`~seedcast.http11.FileBody` (sendfile). Pages
   come from :mod:`seedcast.origin.pages`;
4. adds ``X-Served-By: <name>`` to every response.

Hostile paths are counted per reason in ``seedcast_origin_refused_paths_total``
and logged once per reason at INFO (then at DEBUG), so an attack cannot flood the log.

Viewers: the watch page and ``/catalog`` set a ``seedcast_viewer`` cookie on
a first visit; every request carrying the cookie counts towards the
unique-viewers metric. Media responses never set cookies, so edges can cache them.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from seedcast.http11 import FileBody, Headers, Request, Response, Router
from seedcast.origin import pages
from seedcast.origin.catalog import Catalog
from seedcast.origin.files import INDEX_RECHECK_SECONDS, FileCache, FileState
from seedcast.origin.library import Library
from seedcast.origin.serving import (
    ALLOW,
    CORS_HEADERS,
    PREFLIGHT_HEADERS,
    PathRefused,
    ViewerTracker,
    check_target,
    decide_file,
    viewer_cookie,
)
from seedcast.provenance import SERVED_BY

__all__ = ["INDEX_RECHECK_SECONDS", "OriginApp", "OriginStatistics"]

log = logging.getLogger("seedcast.origin")

_OWN_PREFIXES = frozenset({"watch", "static"})
_CONDITIONAL_HEADERS = frozenset(
    {"range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"}
)


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
        self._catalog = Catalog.empty()
        self._index_stamp: tuple[int, int, int] | None = None
        self._index_checked_at = -math.inf
        self._index_path = str(library.index_path)
        self._served_by = (SERVED_BY, name)
        self.files = FileCache(
            str(library.root),
            manifest_cache=f"public, max-age={int(manifest_max_age)}",
            segment_cache=f"public, max-age={int(segment_max_age)}, immutable",
            served_by=self._served_by,
            clock=clock,
        )
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
            state = self.files.hot(request.raw_path, self.clock(), self._index_checked_at)
            if state is not None:
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
        return Response.text(status, message, [("Cache-Control", pages.NO_STORE)])

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
                self.files.clear()
                self._counters.reloads += 1
            except Exception as error:  # keep serving the last good catalog
                log.warning("library index unreadable", extra={"fields": {"error": str(error)}})
        return self._catalog

    # --- routes -----------------------------------------------------------------------------

    async def _file(self, request: Request) -> Response:
        """Router entry for ``/<id>/<name>``: only reached to answer 405 for other methods."""
        return pages.not_found()  # pragma: no cover (GET and HEAD take the fast path)

    def _serve_file(self, request: Request, video_id: str, name: str) -> Response:
        catalog = self.catalog()
        moved = catalog.renamed_to(video_id)
        if moved is not None:
            return self._finish(self._redirect(f"/{moved}/{name}", request))
        state = self.files.state(catalog, video_id, name)
        if state is None:
            return self._finish(pages.not_found())
        if isinstance(state, PathRefused):
            return self._finish(self._refuse(state, request))
        self.files.remember(request.raw_path, state)
        return self._answer_file(request, state)

    def _answer_file(self, request: Request, state: FileState) -> Response:
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
        return pages.not_found()

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
            [("Cache-Control", pages.NO_STORE)],
        )

    def _viewer_headers(self, request: Request) -> list[tuple[str, str]]:
        viewer, new = self.viewers.observe(request.headers.get_all("cookie"))
        return [("Set-Cookie", viewer_cookie(viewer))] if new else []

    async def _catalog_json(self, request: Request) -> Response:
        headers = [("Cache-Control", "no-cache"), *self._viewer_headers(request)]
        return Response.json(200, self.catalog().to_json(), headers)

    async def _home(self, request: Request) -> Response:
        return pages.home(self.name, self.catalog().to_json()["videos"])

    async def _watch(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        catalog = self.catalog()
        moved = catalog.renamed_to(video_id)
        if moved is not None:
            return self._redirect(f"/watch/{moved}", request)
        entry = catalog.video(video_id)
        if entry is None:
            return pages.not_found(f"no video {video_id!r} here (see /catalog)\n")
        headers = [("Cache-Control", "no-cache"), *self._viewer_headers(request)]
        return pages.watch(video_id, entry, self.dashjs, headers)

    async def _static(self, request: Request) -> Response:
        return pages.static(request, request.path_params["name"], self.dashjs)

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
