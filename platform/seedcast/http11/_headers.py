"""HTTP header fields: a case-insensitive, ordered multi-dict of str -> str.

Names keep the spelling they were given (``Content-Type`` stays ``Content-Type``
on the wire); lookups ignore case. Values are text decoded as ISO-8859-1, the
way HTTP/1.1 carries them, so any byte a peer sends survives a round trip.

Headers built by user code are validated (no CR, LF or NUL; names are tokens):
a bad field raises :class:`~seedcast.errors.LocalProtocolError`, which is what
keeps a proxy from being tricked into response splitting. Headers parsed from
the wire were already validated by the parser and skip the check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import overload

from seedcast.errors import LocalProtocolError

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")


def _check_field(name: str, value: str) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise LocalProtocolError(f"header fields must be str: {name!r}: {value!r}")
    if not _TOKEN.fullmatch(name):
        raise LocalProtocolError(f"invalid header name {name!r}")
    if _BAD_VALUE.search(value):
        raise LocalProtocolError(f"invalid header value for {name}: {value!r}")


class Headers:
    """Ordered multi-dict of header fields with case-insensitive names.

    ``Headers([("Content-Type", "video/mp4")])``, ``Headers({"Vary": "Accept"})``.
    ``h["x"]`` raises KeyError when absent; ``h.get("x")`` returns None;
    ``h.get_all("x")`` lists every value. With several values, ``h["x"]`` and
    ``h.get("x")`` return the first one.
    """

    __slots__ = ("_items", "_wire")

    def __init__(
        self, items: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> None:
        self._wire: object = None  # cache for the server's wire form; None after a change
        if items is None:
            self._items: list[tuple[str, str]] = []
            return
        if isinstance(items, Headers):
            self._items = list(items._items)
            return
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        for pair in pairs:
            if len(pair) != 2:
                raise LocalProtocolError(f"a header field is a (name, value) pair, not {pair!r}")
            _check_field(pair[0], pair[1])
        self._items = [(name, value) for name, value in pairs]

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]]) -> Headers:
        """Wrap fields the parser already validated (no copy, no check)."""
        headers = cls.__new__(cls)
        headers._items = items
        headers._wire = None
        return headers

    # -- reading ---------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        lowered = name.lower()
        for key, value in self._items:
            if key.lower() == lowered:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self._items if key.lower() == lowered]

    def get_list(self, name: str) -> list[str]:
        """Comma-separated values of every ``name`` field, split and stripped."""
        return [
            part.strip()
            for value in self.get_all(name)
            for part in value.split(",")
            if part.strip()
        ]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        lowered = name.lower()
        return any(key.lower() == lowered for key, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        """Every field in order, repeated names included."""
        return list(self._items)

    def keys(self) -> list[str]:
        return [key for key, _ in self._items]

    def values(self) -> list[str]:
        return [value for _, value in self._items]

    def __iter__(self) -> Iterator[str]:
        return iter([key for key, _ in self._items])

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            mine = [(key.lower(), value) for key, value in self._items]
            theirs = [(key.lower(), value) for key, value in other._items]
            return mine == theirs
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        return Headers._trusted(list(self._items))

    # -- writing ---------------------------------------------------------------
    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any existing ones with the same name."""
        _check_field(name, value)
        self._items.append((name, value))
        self._wire = None

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field by one (at the first one's place, else at the end)."""
        _check_field(name, value)
        lowered = name.lower()
        result: list[tuple[str, str]] = []
        placed = False
        for key, old in self._items:
            if key.lower() == lowered:
                if not placed:
                    result.append((name, value))
                    placed = True
            else:
                result.append((key, old))
        if not placed:
            result.append((name, value))
        self._items = result
        self._wire = None

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def setdefault(self, name: str, value: str) -> str:
        existing = self.get(name)
        if existing is not None:
            return existing
        self.add(name, value)
        return value

    def remove(self, name: str) -> None:
        """Drop every ``name`` field (no error when absent)."""
        lowered = name.lower()
        self._items = [(key, value) for key, value in self._items if key.lower() != lowered]
        self._wire = None

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.remove(name)

    def update(self, other: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Set each name of ``other`` (replacing), like dict.update."""
        for name, value in Headers(other)._items:
            self.set(name, value)


@overload
def as_headers(value: None) -> Headers: ...
@overload
def as_headers(value: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers: ...
def as_headers(
    value: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> Headers:
    """``value`` itself when it already is Headers, else a validated copy."""
    if isinstance(value, Headers):
        return value
    return Headers(value)
