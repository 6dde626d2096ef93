"""The origin's pages: the index, the watch page (dash.js), static files.

Plain functions that build responses from the catalog's entries; the routes
in :mod:`seedcast.origin.app` call them. The watch page needs dash.js
(:func:`find_dashjs`); without it the page says how to install it, and the
video is still served to any DASH player.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from seedcast.http11 import FileBody, Request, Response
from seedcast.origin.library import VideoEntry
from seedcast.origin.serving import FileFacts, decide_file

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
HTML = "text/html; charset=utf-8"


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


def home(name: str, videos: Iterable[Mapping[str, Any]]) -> Response:
    """The origin's index: its videos, with links to the watch page and the MPD."""
    items = (
        "\n".join(_home_item(entry) for entry in videos)
        or "<li>no videos yet: <code>seedcast publish FILE --id ID</code></li>"
    )
    page = (
        "<!doctype html><meta charset=utf-8><title>Seedcast videos</title>"
        f"<h1>Seedcast videos</h1><p>served by {html.escape(name)}</p><ul>{items}</ul>"
        '<p><a href="/catalog">catalog (JSON)</a> · <a href="/metrics">metrics</a></p>'
    )
    return Response.text(200, page, [("Cache-Control", "no-cache")], content_type=HTML)


def watch(
    video_id: str, entry: VideoEntry, dashjs: Path | None, headers: list[tuple[str, str]]
) -> Response:
    """The web player page for one video (503 explaining the fix when dash.js is missing)."""
    if dashjs is None or not dashjs.is_file():
        return Response.text(503, _dashjs_missing_page(), headers, content_type=HTML)
    template = (STATIC_DIR / "watch.html").read_text(encoding="utf-8")
    manifest = json.dumps(f"/{video_id}/{entry.manifest}").replace("</", "<\\/")
    page = (
        template.replace("{{TITLE}}", html.escape(entry.title))
        # The id under the title only when it says something the title doesn't.
        .replace("{{VIDEO_ID}}", "" if entry.title == video_id else html.escape(video_id))
        .replace("{{MANIFEST_JSON}}", manifest)
    )
    return Response.text(200, page, headers, content_type=HTML)


def static(request: Request, name: str, dashjs: Path | None) -> Response:
    """A file of the static folder, or dash.js; conditionals and ranges apply."""
    if name == DASHJS_NAME:
        if dashjs is None or not dashjs.is_file():
            return Response.text(
                404,
                "// dash.js is not installed: run `npm install` in the Seedcast folder\n"
                "// (it puts dashjs in node_modules/), or set origin.dashjs in the config.\n",
                [("Cache-Control", NO_STORE)],
                content_type="text/javascript; charset=utf-8",
            )
        path = dashjs
    else:
        path = STATIC_DIR / name
        if name.endswith(".html") or not path.is_file():
            return not_found()
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


def _home_item(entry: Mapping[str, Any]) -> str:
    watch = html.escape(f"/watch/{entry['id']}")
    manifest = html.escape(entry["manifest"])
    return (
        f'<li><a href="{watch}">{html.escape(entry["title"])}</a> '
        f'({entry["duration"]:.0f} s) · <a href="{manifest}">MPD</a></li>'
    )


def not_found(message: str = "not found\n") -> Response:
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
