"""Headers, Request, Response, FileBody and Router: pure objects, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from seedcast.errors import LocalProtocolError, RemoteProtocolError
from seedcast.http11 import FileBody, Headers, Request, Response, Router

# -- Headers ------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_ordered() -> None:
    headers = Headers([("Content-Type", "video/mp4"), ("Vary", "Accept"), ("vary", "Range")])
    assert headers.get("content-type") == "video/mp4"
    assert headers["CONTENT-TYPE"] == "video/mp4"
    assert headers.get_all("VARY") == ["Accept", "Range"]
    assert headers.get_list("vary") == ["Accept", "Range"]
    assert "etag" not in headers
    assert "Vary" in headers
    assert headers.items() == [("Content-Type", "video/mp4"), ("Vary", "Accept"), ("vary", "Range")]
    assert list(headers) == ["Content-Type", "Vary", "vary"]
    assert len(headers) == 3
    assert headers.get("missing") is None
    with pytest.raises(KeyError):
        headers["missing"]


def test_headers_set_replaces_every_value_in_place() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    headers.set("a", "x")
    assert headers.items() == [("a", "x"), ("B", "2")]
    headers["C"] = "y"
    headers.add("c", "z")
    assert headers.get_all("c") == ["y", "z"]
    headers.remove("C")
    assert "c" not in headers
    del headers["b"]
    assert headers.items() == [("a", "x")]
    with pytest.raises(KeyError):
        del headers["b"]
    assert headers.setdefault("a", "ignored") == "x"
    assert headers.setdefault("D", "4") == "4"


def test_headers_from_mapping_copy_and_equality() -> None:
    headers = Headers({"Content-Length": "3"})
    copy = headers.copy()
    copy.add("X", "1")
    assert headers == Headers([("content-length", "3")])
    assert copy != headers
    assert Headers(headers) == headers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Bad Name", "x"),
        ("", "x"),
        ("X", "a\r\nInjected: yes"),
        ("X", "a\nb"),
        ("X", "nul\x00"),
        ("Na:me", "x"),
    ],
)
def test_headers_refuse_fields_that_would_split_a_message(name: str, value: str) -> None:
    with pytest.raises(LocalProtocolError):
        Headers([(name, value)])
    with pytest.raises(LocalProtocolError):
        Headers().add(name, value)


# -- Request ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "raw_path", "query"),
    [
        ("/a/b?x=1&y=2", "/a/b", "/a/b", "x=1&y=2"),
        ("/movie%20one/seg%2F1.m4s", "/movie one/seg/1.m4s", "/movie%20one/seg%2F1.m4s", ""),
        ("http://example.test:8080/a?q", "/a", "/a", "q"),
        ("http://example.test", "/", "/", ""),
        ("*", "*", "*", ""),
        ("/%ff", "/\ufffd", "/%ff", ""),
    ],
)
def test_request_splits_and_decodes_the_target(
    target: str, path: str, raw_path: str, query: str
) -> None:
    request = Request("GET", target)
    assert (request.path, request.raw_path, request.query) == (path, raw_path, query)
    assert request.target == target


async def test_request_body_is_read_once_and_bounded() -> None:
    request = Request("POST", "/", body=b"hello")
    assert await request.body() == b"hello"
    assert await request.body() == b"hello"
    assert [chunk async for chunk in request.stream()] == [b"hello"]
    big = Request("POST", "/", body=b"x" * 100)
    with pytest.raises(RemoteProtocolError) as caught:
        await big.body(max_size=10)
    assert caught.value.status_hint == 413
    declared = Request("POST", "/", headers=[("Content-Length", "100")], body=b"x" * 100)
    with pytest.raises(RemoteProtocolError):
        await declared.body(max_size=10)


# -- Response, FileBody --------------------------------------------------------------


def test_response_helpers() -> None:
    text = Response.text(404, "nope")
    assert (text.status, text.body) == (404, b"nope")
    assert text.headers.get("content-type") == "text/plain; charset=utf-8"
    data = Response.json(200, {"a": [1, "é"]}, headers=[("Cache-Control", "no-store")])
    assert data.body == '{"a":[1,"é"]}'.encode()
    assert data.headers.get("content-type") == "application/json"
    assert data.headers.get("cache-control") == "no-store"
    with pytest.raises(LocalProtocolError):
        Response(200, body="text is not bytes")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Response(42)


def test_file_body_stats_the_file_now(tmp_path: Path) -> None:
    path = tmp_path / "segment.m4s"
    path.write_bytes(b"0123456789")
    assert FileBody(path).length == 10
    assert FileBody(path, offset=4).length == 6
    assert FileBody(path, offset=2, length=3).length == 3
    with pytest.raises(FileNotFoundError):
        FileBody(tmp_path / "missing")
    with pytest.raises(ValueError, match="past the end"):
        FileBody(path, offset=11)
    with pytest.raises(ValueError, match="negative"):
        FileBody(path, offset=-1)


# -- Router -------------------------------------------------------------------------


def _named(name: str):  # type: ignore[no-untyped-def]
    async def handler(request: Request) -> Response:
        return Response.json(200, {"handler": name, "params": request.path_params})

    return handler


def _router() -> Router:
    router = Router()
    router.add("GET", "/", _named("root"))
    router.add("GET", "/{video_id}/manifest.mpd", _named("manifest"))
    router.add("GET", "/{video_id}/{rest:path}", _named("segment"))
    router.add("POST", "/announce", _named("announce-post"))
    router.add("*", "/any", _named("any"))
    return router


@pytest.mark.parametrize(
    ("method", "path", "handler", "params"),
    [
        ("GET", "/", "root", {}),
        ("HEAD", "/", "root", {}),
        ("GET", "/sample/manifest.mpd", "manifest", {"video_id": "sample"}),
        (
            "GET",
            "/sample/720p/seg-1.m4s",
            "segment",
            {"video_id": "sample", "rest": "720p/seg-1.m4s"},
        ),
        ("HEAD", "/sample/init.mp4", "segment", {"video_id": "sample", "rest": "init.mp4"}),
        ("GET", "/sample/", "segment", {"video_id": "sample", "rest": ""}),
        ("DELETE", "/any", "any", {}),
    ],
)
async def test_router_dispatches(
    method: str, path: str, handler: str, params: dict[str, str]
) -> None:
    response = await _router()(Request(method, path))
    assert response.status == 200
    assert response.body == Response.json(200, {"handler": handler, "params": params}).body


async def test_router_answers_404_and_405_with_allow() -> None:
    router = _router()
    assert (await router(Request("GET", "/nothing-here"))).status == 404
    response = await router(Request("GET", "/announce"))
    assert response.status == 405
    assert response.headers.get("allow") == "POST"
    response = await router(Request("DELETE", "/sample/manifest.mpd"))
    assert response.status == 405
    assert response.headers.get("allow") == "GET, HEAD"


@pytest.mark.parametrize(
    "pattern", ["no-slash", "/{a}/{a}", "/{rest:path}/more", "/{bad name}", "/{open"]
)
def test_router_refuses_bad_patterns(pattern: str) -> None:
    with pytest.raises(LocalProtocolError):
        Router().add("GET", pattern, _named("x"))


def test_router_refuses_duplicate_static_routes() -> None:
    router = Router()
    router.add("GET", "/a", _named("x"))
    with pytest.raises(LocalProtocolError):
        router.add("GET", "/a", _named("y"))
