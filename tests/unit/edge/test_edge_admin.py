"""The edge's admin answers without a socket: purge messages, the purge request, health."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest
import trio
from seedcast.edge import admin
from seedcast.http11 import Request, Response


@pytest.mark.parametrize(
    ("message", "prefix"),
    [({"id": "sample"}, "/sample/"), ({"prefix": "/sample/chunk"}, "/sample/chunk")],
)
def test_purge_messages(message: dict[str, object], prefix: str) -> None:
    assert admin.message_prefix(message) == prefix


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({}, "exactly one"),
        ({"id": "a", "prefix": "/a/"}, "exactly one"),
        ({"id": 5}, "must be a string"),
        ({"prefix": ["/"]}, "must be a string"),
        ({"id": "a/b"}, "not a video id"),
        ({"id": ""}, "not a video id"),
        ({"prefix": "sample/"}, "must start with '/'"),
        ({"prefix": ""}, "must start with '/'"),
    ],
)
def test_bad_purge_messages(message: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        admin.message_prefix(message)


def _local(status: int, message: str, extra: Iterable[tuple[str, str]]) -> Response:
    return Response(status, list(extra), message.encode())


def _purge(method: str, client: str, token: str, body: bytes) -> tuple[int, bytes, list[str]]:
    purged: list[str] = []

    def purge(prefix: str) -> int:
        purged.append(prefix)
        return 3

    request = Request(
        method,
        admin.PURGE_PATH,
        headers=[("Authorization", f"Bearer {token}")],
        client=(client, 1234),
        body=body,
    )
    response = trio.run(admin.purge_request, request, "secret", purge, _local)
    content = response.body if isinstance(response.body, bytes) else b""
    return response.status, content, purged


def test_purge_request_checks_method_address_token_and_body() -> None:
    status, content, purged = _purge("POST", "127.0.0.1", "secret", b'{"id": "sample"}')
    assert (status, json.loads(content), purged) == (200, {"purged": 3}, ["/sample/"])
    assert _purge("GET", "127.0.0.1", "secret", b"")[0] == 405
    for client, token in (("192.0.2.1", "secret"), ("127.0.0.1", "wrong")):
        status, _, purged = _purge("POST", client, token, b'{"id": "x"}')
        assert (status, purged) == (403, [])
    status, content, purged = _purge("PURGE", "127.0.0.1", "secret", b"[1]")
    assert (status, purged) == (400, [])
    assert b"expected a JSON object" in content
    assert _purge("POST", "127.0.0.1", "secret", b"{not json")[0] == 400


def test_health_and_load() -> None:
    assert admin.load_number(3, 2 * admin.LOAD_BYTES_UNIT) == 5.0
    load = {"load": 1.5}
    assert admin.health(load, draining=False).status == 200
    draining = admin.health(load, draining=True)
    assert draining.status == 503
    assert draining.headers["x-seedcast-load"] == "1.5"
