"""Seedcast's own response headers and how a byte's source is told from a response.

Every server names itself in ``X-Served-By``. An edge adds ``X-Cache`` (HIT,
MISS, STALE, ...); the origin never does, so a CDN answer with ``X-Cache``
came from an edge and one without from the origin (:func:`cdn_source`).

A viewer agent assembles a response from several sources and says how many
of its bytes each gave, in ``X-Seedcast-Bytes-<Source>`` (:func:`bytes_header`,
read back with :func:`agent_split`). Sources are four classes
(:class:`Source`): ``origin``, ``edge``, ``seed`` (an infrastructure seeding
peer run by the content owner) and ``viewer`` (another viewer's peer). Two
more labels exist because the agent cannot always be that precise:
:data:`PEER` counts peer bytes it has not told apart into seed or viewer
(the swarm does not know yet which peers are the owner's), and
:data:`LOCAL` bytes it found on its own disk at start.
"""

from __future__ import annotations

from enum import StrEnum

from seedcast.http11 import Headers

__all__ = [
    "CACHE",
    "LOCAL",
    "PEER",
    "SERVED_BY",
    "UPSTREAM",
    "Source",
    "agent_split",
    "bytes_header",
    "cdn_source",
]

SERVED_BY = "X-Served-By"
"""The name of the server that sent the response (every role sets it)."""
CACHE = "X-Cache"
"""An edge's cache result; only edges set it."""
UPSTREAM = "X-Seedcast-Upstream"
"""Set by an agent relaying a CDN response: the ``X-Served-By`` it got."""


class Source(StrEnum):
    """Where bytes came from."""

    ORIGIN = "origin"
    EDGE = "edge"
    SEED = "seed"
    """An infrastructure seeding peer run by the content owner."""
    VIEWER = "viewer"
    """Another viewer's peer."""


PEER = "peer"
"""Peer bytes not yet told apart into :attr:`Source.SEED` or :attr:`Source.VIEWER`."""
LOCAL = "cache"
"""Bytes an agent found on its own disk at start (their first source is unknown)."""

_LABELS = (*(source.value for source in Source), PEER, LOCAL)


def bytes_header(label: str) -> str:
    """``"edge"`` -> ``"X-Seedcast-Bytes-Edge"``; ValueError for an unknown label."""
    if label not in _LABELS:
        raise ValueError(f"not a byte source: {label!r}")
    return f"X-Seedcast-Bytes-{label.title()}"


BYTES_HEADERS: tuple[str, ...] = tuple(bytes_header(label) for label in _LABELS)
"""Every byte-count header, e.g. for ``Access-Control-Expose-Headers``."""


def agent_split(headers: Headers) -> dict[str, int] | None:
    """Bytes per label from an agent's response; None when it has no such header.

    Labels the response leaves out count 0; a malformed count counts 0.
    """
    split: dict[str, int] = {}
    found = False
    for label in _LABELS:
        value = headers.get(bytes_header(label))
        found = found or value is not None
        split[label] = int(value) if value and value.isascii() and value.isdigit() else 0
    return split if found else None


def cdn_source(headers: Headers) -> Source:
    """Which CDN tier answered: :attr:`Source.EDGE` (it sets X-Cache) or the origin."""
    return Source.EDGE if CACHE in headers else Source.ORIGIN
