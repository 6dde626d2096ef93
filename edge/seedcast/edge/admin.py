"""The edge's local answers: ``/healthz`` (its load, read by the DNS) and the admin purge.

How it works: :func:`health` answers 200 (503 while draining) with the
load report and ``X-Seedcast-Load``. :func:`purge_request` accepts ``POST`` /
``PURGE`` on :data:`PURGE_PATH` only from a loopback address, with
``Authorization: Bearer <admin_token>`` (compared in constant time), and a
JSON body ``{"id": "<video>"}`` or ``{"prefix": "/path/"}``
(:func:`purge_prefix` checks it); anything else gets a one-line 4xx.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable, Iterable
from typing import Any

from seedcast.http11 import Request, Response
from seedcast.units import MiB

PURGE_PATH = "/_seedcast/purge"
HEALTH_PATH = "/healthz"
LOAD_BYTES_UNIT = float(MiB)
MAX_PURGE_BODY = 4096

Local = Callable[[int, str, Iterable[tuple[str, str]]], Response]
"""Builds the edge's one-line local answer (status, message, extra headers)."""


def load_number(open_connections: int, bytes_out_per_second: float) -> float:
    """Open connections + bytes/s out in MiB/s: one number that grows with both
    many idle viewers and a few heavy ones (the DNS's least-loaded policy reads it)."""
    return round(open_connections + bytes_out_per_second / LOAD_BYTES_UNIT, 3)


def health(load: dict[str, Any], *, draining: bool) -> Response:
    headers = [("Cache-Control", "no-store"), ("X-Seedcast-Load", str(load["load"]))]
    return Response.json(503 if draining else 200, load, headers)


def purge_prefix(*, video_id: str | None = None, prefix: str | None = None) -> str:
    """The path prefix to purge for a video (``/<id>/``) or a prefix; ValueError if bad."""
    if video_id is not None:
        if not video_id or "/" in video_id:
            raise ValueError(f"not a video id: {video_id!r}")
        prefix = f"/{video_id}/"
    if not prefix or not prefix.startswith("/"):
        raise ValueError(f"purge prefix must start with '/': {prefix!r}")
    return prefix


def message_prefix(message: dict[str, Any]) -> str:
    """The prefix of ``{"id": ...}`` or ``{"prefix": ...}``; ValueError otherwise."""
    video_id = message.get("id")
    prefix = message.get("prefix")
    if (video_id is None) == (prefix is None):
        raise ValueError('give exactly one of "id" or "prefix"')
    if video_id is not None and not isinstance(video_id, str):
        raise ValueError('"id" must be a string')
    if prefix is not None and not isinstance(prefix, str):
        raise ValueError('"prefix" must be a string')
    return purge_prefix(video_id=video_id, prefix=prefix)


async def purge_request(
    request: Request, token: str, purge: Callable[[str], int], local: Local
) -> Response:
    """Answer an HTTP purge; ``purge(prefix)`` removes and returns the object count."""
    if request.method not in ("POST", "PURGE"):
        return local(405, "purge with POST", [("Allow", "POST")])
    try:
        client_is_loopback = ipaddress.ip_address(request.client[0]).is_loopback
    except ValueError:
        client_is_loopback = False
    if not client_is_loopback:
        return local(403, "purge is accepted from loopback addresses only", ())
    if not token:
        return local(403, "purge over HTTP is off (no admin_token in the config)", ())
    offered = request.headers.get("authorization") or ""
    scheme, _, credential = offered.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        credential.strip().encode(), token.encode()
    ):
        return local(403, "wrong or missing admin token", ())
    try:
        raw = await request.body(max_size=MAX_PURGE_BODY)
        message = json.loads(raw or b"{}")
        if not isinstance(message, dict):
            raise ValueError("expected a JSON object")
        count = purge(message_prefix(message))
    except (ValueError, UnicodeDecodeError) as error:
        return local(400, f"bad purge request: {error}", ())
    return Response.json(200, {"purged": count}, [("Cache-Control", "no-store")])
