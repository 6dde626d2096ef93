"""A small router: method + path pattern -> handler.

Patterns are paths whose segments may be ``{name}`` (one segment, no ``/``)
or, last, ``{name:path}`` (the rest, slashes included, may be empty)::

    router.add("GET", "/{video_id}/manifest.mpd", manifest)
    router.add("GET", "/{video_id}/{rest:path}", segment)

Static patterns are looked up in a dict; the others are tried in the order
they were added, so add specific routes first. Matching is on the decoded
``request.path``; parameters land in ``request.path_params``. A HEAD request
uses the GET handler (the server drops the body). No route: 404. A route
for another method: 405 with ``Allow``. The router is itself a handler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from seedcast.errors import LocalProtocolError

from ._headers import Headers
from ._messages import Handler, Request, Response

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    regex: re.Pattern[str] | None  # None: a static path


def compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """A regex for ``pattern``, or None when it has no parameters."""
    if not pattern.startswith("/"):
        raise LocalProtocolError(f"route pattern must start with '/': {pattern!r}")
    if "{" not in pattern:
        return None
    parts: list[str] = []
    position = 0
    names: set[str] = set()
    for match in _PARAM.finditer(pattern):
        parts.append(re.escape(pattern[position : match.start()]))
        name, kind = match.group(1), match.group(2)
        if name in names:
            raise LocalProtocolError(f"route pattern repeats {{{name}}}: {pattern!r}")
        names.add(name)
        if kind == "path":
            if match.end() != len(pattern):
                raise LocalProtocolError(f"{{{name}:path}} must end the pattern: {pattern!r}")
            parts.append(f"(?P<{name}>.*)")
        else:
            parts.append(f"(?P<{name}>[^/]+)")
        position = match.end()
    rest = pattern[position:]
    if "{" in rest or "}" in rest:
        raise LocalProtocolError(f"bad parameter in route pattern {pattern!r}")
    parts.append(re.escape(rest))
    return re.compile("".join(parts))


class Router:
    """Dispatch requests to handlers by method and path; see the module docstring."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Handler]] = {}
        self._dynamic: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Route ``method`` (e.g. "GET"; "*" for any) on ``pattern`` to ``handler``."""
        method = method.upper()
        regex = compile_pattern(pattern)
        if regex is None:
            methods = self._static.setdefault(pattern, {})
            if method in methods:
                raise LocalProtocolError(f"route {method} {pattern} is already taken")
            methods[method] = handler
        else:
            self._dynamic.append(Route(method, pattern, handler, regex))

    def route(self, method: str, pattern: str) -> object:
        """Decorator form of :meth:`add`."""

        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    def resolve(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], list[str]]:
        """(handler, path parameters, methods allowed on the path) for a request."""
        wanted = "GET" if method == "HEAD" else method
        methods = self._static.get(path)
        if methods is not None:
            handler = methods.get(method) or methods.get(wanted) or methods.get("*")
            if handler is not None:
                return handler, {}, []
        allowed: list[str] = list(methods) if methods else []
        for route in self._dynamic:
            assert route.regex is not None
            match = route.regex.fullmatch(path)
            if match is None:
                continue
            if route.method in (method, wanted, "*"):
                return route.handler, match.groupdict(), []
            allowed.append(route.method)
        return None, {}, allowed

    async def __call__(self, request: Request) -> Response:
        methods = self._static.get(request.path)
        if methods is not None:  # fast path: a static route for this exact method
            handler = methods.get(request.method)
            if handler is not None:
                return await handler(request)
        handler, params, allowed = self.resolve(request.method, request.path)
        if handler is None:
            if not allowed:
                return Response.text(404, "not found\n")
            allow = set(allowed)
            if "GET" in allow:
                allow.add("HEAD")
            return Response.text(
                405,
                "method not allowed\n",
                Headers([("Allow", ", ".join(sorted(allow)))]),
            )
        request.path_params = params
        return await handler(request)
