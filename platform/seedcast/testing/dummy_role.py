"""A tiny stand-in role for the launcher's own tests.

``python -m seedcast.testing.dummy_role --name NAME --listen HOST:PORT`` serves
``/metrics`` (and a short text on any other path) over HTTP/1.1 through
:func:`seedcast.roles.run_role`, so it speaks the control channel like a real
role: hello, ready, status (requests served), drain, shutdown, and a ``purge``
handler. ``--fail`` makes it exit before ready (to test crash handling).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import h11
import trio
from seedcast.config import default_config
from seedcast.metrics import new_registry, render_metrics
from seedcast.roles import run_role
from seedcast.units import parse_host_port


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="seedcast-dummy")
    parser.add_argument("--name", default="dummy")
    parser.add_argument("--role", default="dummy")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--config", default=None)
    parser.add_argument("--fail", action="store_true", help="raise before ready")
    args = parser.parse_args(argv)
    registry = new_registry(args.role, args.name)
    counters = {"requests": 0, "purges": 0}

    async def handle(stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    with trio.move_on_after(10) as scope:
                        data = await stream.receive_some(65536)
                    if scope.cancelled_caught:
                        return
                    connection.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    counters["requests"] += 1
                    if event.target.startswith(b"/metrics"):
                        body, content_type = render_metrics(registry)
                    else:
                        body, content_type = f"{args.name}\n".encode(), "text/plain"
                    headers = [("content-type", content_type), ("content-length", str(len(body)))]
                    await stream.send_all(
                        connection.send(h11.Response(status_code=200, headers=headers))
                    )
                    await stream.send_all(connection.send(h11.Data(data=body)))
                    await stream.send_all(connection.send(h11.EndOfMessage()))
                    continue
                if isinstance(event, h11.EndOfMessage) and connection.our_state is h11.DONE:
                    if connection.their_state is h11.DONE:
                        connection.start_next_cycle()
                    continue
                if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return
        except (h11.RemoteProtocolError, trio.BrokenResourceError, OSError):
            return
        finally:
            await stream.aclose()

    async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if args.fail:
            raise OSError("dummy asked to fail before ready")
        host, port = parse_host_port(args.listen)
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()
        task_status.started([f"{bound[0]}:{bound[1]}"])
        await trio.serve_listeners(handle, listeners)

    async def purge(message: Mapping[str, Any]) -> Mapping[str, Any]:
        counters["purges"] += 1
        return {"purged": message.get("prefix", "")}

    return run_role(
        role=args.role,
        name=args.name,
        config=default_config(),
        serve=serve,
        control_handlers={"purge": purge},
        statistics=lambda: dict(counters),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
