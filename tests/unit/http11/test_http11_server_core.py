"""The sans-IO server core: request parsing events, errors and response framing."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seedcast.errors import LocalProtocolError, RemoteProtocolError
from seedcast.http11 import Headers
from seedcast.http11._server_core import (
    CONNECTION_CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    Data,
    Event,
    Framing,
    RequestHead,
    RequestParser,
    frame_response,
)


def _events(parser: RequestParser) -> list[Event]:
    events = []
    while (event := parser.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def _parse(*pieces: bytes, **kwargs: int) -> list[Event]:
    parser = RequestParser(**kwargs)
    events: list[Event] = []
    for piece in pieces:
        parser.receive_data(piece)
        events.extend(_events(parser))
    return events


def _feed_all(parser: RequestParser, pieces: tuple[bytes, ...]) -> None:
    for piece in pieces:
        parser.receive_data(piece)
        _events(parser)


def _status_of(parser: RequestParser, pieces: tuple[bytes, ...]) -> int | None:
    """None when every piece parsed into events, else the error's status hint."""
    try:
        _feed_all(parser, pieces)
    except RemoteProtocolError as error:
        return error.status_hint
    return None


def _error(*pieces: bytes, **kwargs: int) -> RemoteProtocolError:
    parser = RequestParser(**kwargs)
    with pytest.raises(RemoteProtocolError) as caught:
        _feed_all(parser, pieces)
    return caught.value


def test_simple_get() -> None:
    events = _parse(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    assert events == [
        RequestHead("GET", "/a?b=1", "1.1", [("Host", "x"), ("Accept", "*/*")], True, False),
        END_OF_MESSAGE,
    ]


def test_pipelined_requests_queue_in_order() -> None:
    events = _parse(
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    heads = [event.target for event in events if isinstance(event, RequestHead)]
    assert heads == ["/1", "/2", "/3"]
    assert Data(b"abc") in events
    assert events.count(END_OF_MESSAGE) == 3


def test_chunked_body_fed_one_byte_at_a_time() -> None:
    raw = (
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    events = _parse(*[raw[i : i + 1] for i in range(len(raw))])
    body = b"".join(event.data for event in events if isinstance(event, Data))
    assert body == b"abcde"
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.headers == [
        ("Host", "x"),
        ("Transfer-Encoding", "chunked"),
    ]  # the trailer is not a header
    assert events[-1] is END_OF_MESSAGE


def test_http10_keep_alive_and_close() -> None:
    (head, _) = _parse(b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert (head.version, head.keep_alive) == ("1.0", False)
    (head, _) = _parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert head.keep_alive
    (head, _) = _parse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert not head.keep_alive


def test_expect_continue_is_reported() -> None:
    head = _parse(
        b"PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )[0]
    assert isinstance(head, RequestHead)
    assert head.expect_continue


def test_eof_between_requests_and_in_the_middle() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(_events(parser)) == 2
    parser.receive_data(b"")
    assert parser.next_event() is CONNECTION_CLOSED
    error = _error(b"GET / HTTP/1.1\r\nHost:", b"")
    assert error.reason == "incomplete"
    error = _error(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", b"")
    assert error.reason == "incomplete"


def test_upgrade_request_is_answered_then_closed() -> None:
    parser = RequestParser()
    parser.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    )
    assert isinstance(parser.next_event(), RequestHead)
    assert not parser.reusable


@pytest.mark.parametrize(
    ("pieces", "status", "reason"),
    [
        ((b"GET / HTTP/2.0\r\n\r\n",), 505, "version"),
        ((b"GET / HTTP/1.2\r\n\r\n",), 505, "version"),
        ((b"GET / HTTP/3.0\r\n\r\n",), 505, "version"),
        ((b"GET /\r\n\r\n",), 400, "bad_request_line"),
        ((b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",), 501, "method"),
        ((b"F", b"OO / HT", b"TP/1.1\r\n\r\n"), 501, "method"),
        ((b"PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n",), 501, "method"),
        ((b"CONNECT a:443 HTTP/1.1\r\nHost: x\r\n\r\n",), 501, "method"),
        ((b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n",), 501, "method"),
        ((b"hello world\r\n\r\n",), 400, "bad_request_line"),
        ((b"get / HTTP/1.1\r\nHost: x\r\n\r\n",), 501, "method"),
        ((b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",), 400, "malformed"),
        ((b"GET / HTTP/1.1\nHost: x\n\n",), 400, "malformed"),
        ((b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n",), 400, "bad_target"),
        ((b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",), 400, "malformed"),
        (
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            400,
            "malformed",
        ),
        ((b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",), 400, "malformed"),
        (
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",),
            400,
            "malformed",
        ),
        ((b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",), 400, "bad_request_line"),
    ],
)
def test_bad_requests_carry_their_status(
    pieces: tuple[bytes, ...], status: int, reason: str
) -> None:
    error = _error(*pieces, b"")
    assert (error.status_hint, error.reason) == (status, reason)


def test_events_before_a_fault_come_first() -> None:
    parser = RequestParser()
    parser.receive_data(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
    head = parser.next_event()
    assert isinstance(head, RequestHead)
    assert head.target == "/ok"
    assert parser.next_event() is END_OF_MESSAGE
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


@pytest.mark.parametrize(
    ("pieces", "status", "reason"),
    [
        ((b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",), 414, "target_too_long"),
        (
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"v" * 17000 + b"\r\n\r\n",),
            431,
            "head_too_large",
        ),
        (
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n"
                + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 50) for i in range(400)),
            ),
            431,
            "head_too_large",
        ),
        (
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ", *([b"v" * 1000] * 40)),
            431,
            "head_too_large",
        ),
        ((b"GET /" + b"a" * 1000, *([b"a" * 1000] * 40)), 414, "target_too_long"),
    ],
)
def test_oversized_heads_get_414_or_431(
    pieces: tuple[bytes, ...], status: int, reason: str
) -> None:
    error = _error(*pieces, max_head_size=16 * 1024)
    assert (error.status_hint, error.reason) == (status, reason)


def test_large_bodies_do_not_count_as_head() -> None:
    body = b"x" * 100_000
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    events = _parse(*[raw[i : i + 4096] for i in range(0, len(raw), 4096)], max_head_size=1024)
    assert sum(len(event.data) for event in events if isinstance(event, Data)) == len(body)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=8))
def test_any_bytes_give_events_or_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    parser = RequestParser(max_head_size=256)
    bounds = sorted({0, len(data), *[cut for cut in cuts if cut <= len(data)]})
    pieces = (*(data[start:end] for start, end in itertools.pairwise(bounds)), b"")
    status = _status_of(parser, pieces)
    assert status in (None, 400, 431, 501, 505)


_methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "FOO", "get", "G\x00T", ""])
_targets = st.sampled_from(["/", "/a?b", "*", "http://x/y", "", "/\x7f", "/a b"])
_versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.", "http/1.1", ""])
_fields = st.lists(
    st.tuples(
        st.text(st.characters(codec="latin-1"), max_size=12),
        st.text(st.characters(codec="latin-1"), max_size=20),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(method=_methods, target=_targets, version=_versions, fields=_fields)
def test_near_miss_heads_give_events_or_remote_protocol_error(
    method: str, target: str, version: str, fields: list[tuple[str, str]]
) -> None:
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields)
    status = _status_of(RequestParser(), (head.encode("latin-1") + b"\r\n", b""))
    assert status in (None, 400, 431, 501, 505)


# -- framing -------------------------------------------------------------------------


def _frame(**overrides: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "method": "GET",
        "version": "1.1",
        "keep_alive": True,
        "status": 200,
        "headers": Headers([("Content-Type", "text/plain")]),
        "body_length": 5,
        "date": b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n",
        "server": b"Server: test\r\n",
    }
    arguments.update(overrides)
    return frame_response(**arguments)  # type: ignore[arg-type]


def test_frame_with_content_length() -> None:
    frame = _frame()
    assert frame.head == (
        b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nServer: test\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    )
    assert (frame.framing, frame.length, frame.keep_alive) == (Framing.LENGTH, 5, True)


def test_frame_streams_chunked_or_close_delimited() -> None:
    frame = _frame(body_length=None)
    assert frame.framing is Framing.CHUNKED
    assert b"Transfer-Encoding: chunked\r\n" in frame.head
    frame = _frame(body_length=None, version="1.0")
    assert (frame.framing, frame.keep_alive) == (Framing.CLOSE, False)
    assert b"Connection: close\r\n" in frame.head
    frame = _frame(body_length=None, headers=Headers([("Content-Length", "9")]))
    assert (frame.framing, frame.length) == (Framing.LENGTH, 9)


def test_frame_head_and_bodiless_statuses() -> None:
    frame = _frame(method="HEAD", body_length=1234)
    assert frame.framing is Framing.NONE
    assert b"Content-Length: 1234\r\n" in frame.head
    frame = _frame(method="HEAD", body_length=0, headers=Headers([("Content-Length", "77")]))
    assert b"Content-Length: 77\r\n" in frame.head
    for status in (204, 304, 101):
        frame = _frame(status=status, body_length=0)
        assert frame.framing is Framing.NONE
        assert b"Content-Length" not in frame.head


def test_frame_connection_handling() -> None:
    assert b"Connection: keep-alive\r\n" in _frame(version="1.0").head
    frame = _frame(keep_alive=False)
    assert not frame.keep_alive
    assert b"Connection: close\r\n" in frame.head
    frame = _frame(headers=Headers([("Connection", "close")]))
    assert not frame.keep_alive
    assert frame.head.count(b"Connection") == 1


def test_frame_keeps_handler_date_and_server() -> None:
    frame = _frame(headers=Headers([("Date", "x"), ("Server", "origin")]))
    assert b"Date: x\r\n" in frame.head
    assert b"Server: origin\r\n" in frame.head
    assert b"Server: test" not in frame.head
    assert b"Thu, 01 Jan" not in frame.head


def test_frame_refuses_inconsistent_handler_headers() -> None:
    with pytest.raises(LocalProtocolError):
        _frame(headers=Headers([("Content-Length", "4")]))
    with pytest.raises(LocalProtocolError):
        _frame(headers=Headers([("Transfer-Encoding", "chunked")]))
    with pytest.raises(LocalProtocolError):
        _frame(headers=Headers([("Content-Length", "x")]))


def test_frame_unknown_status_and_custom_reason() -> None:
    assert _frame(status=599).head.startswith(b"HTTP/1.1 599 \r\n")
    assert _frame(reason="Fine\r\nX: y").head.startswith(b"HTTP/1.1 200 Fine  X: y\r\n")


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        # RFC 9112 6.3: chunked must be the final coding of a request; no others are known.
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400, "bad_framing"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "bad_framing"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
            "transfer_coding",
        ),
        # RFC 9112 3.2: exactly one Host in HTTP/1.1.
        (b"GET / HTTP/1.1\r\n\r\n", 400, "bad_host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "bad_host"),
        # obs-text is refused up front rather than failing later (the edge answered 502).
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n\r\n", 400, "bad_header"),
        (b"GET / HTTP/1.1\r\nHost: x\xff\r\n\r\n", 400, "bad_header"),
    ],
)
def test_hostile_heads_are_refused_before_any_handler_sees_them(
    raw: bytes, status: int, reason: str
) -> None:
    parser = RequestParser()
    parser.receive_data(raw)
    with pytest.raises(RemoteProtocolError) as caught:
        parser.next_event()  # no RequestHead comes first: the handler never runs
    assert (caught.value.status_hint, caught.value.reason) == (status, reason)


def test_http10_needs_no_host_and_purge_is_a_known_method() -> None:
    (head, _) = _parse(b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(head, RequestHead)
    (head, _) = _parse(b"PURGE /video/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(head, RequestHead)
    assert head.method == "PURGE"


def test_binary_junk_is_refused_at_once_not_after_a_timeout() -> None:
    parser = RequestParser()
    parser.receive_data(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64)  # TLS
    with pytest.raises(RemoteProtocolError) as caught:
        parser.next_event()
    assert caught.value.status_hint == 400
    parser = RequestParser()
    parser.receive_data(b"BREW /pot HTT")  # an unknown method, line not finished: wait
    assert parser.next_event() is NEED_DATA
