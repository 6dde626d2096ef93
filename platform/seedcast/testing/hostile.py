"""Hostile inputs that more than one test throws at a parser.

:data:`TRAVERSAL_PIECES` are the pieces of a request path that path-traversal
tricks are made of (dots, slashes and their percent-encodings, overlong UTF-8,
NUL, CRLF, query and fragment marks); tests join random lists of them, with
names of their own library, and check that nothing outside it is reached.
"""

from __future__ import annotations

__all__ = ["TRAVERSAL_PIECES"]

TRAVERSAL_PIECES: tuple[str, ...] = (
    "..",
    ".",
    "/",
    "//",
    "\\",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%00",
    "%",
    "%25",
    "%c0%ae",
    "%u002e",
    "%0d%0a",
    "~",
    ":",
    ";",
    "?",
    "#",
    "etc",
    "passwd",
)
