"""Sans-IO piece picker: which blocks to request from which peer.

How it works. The picker knows which pieces we have, how many connected
peers have each piece (availability), and the state of every block of the
pieces in progress (free, requested from some peers, received). When a
connection has room in its request pipeline the shell asks
:meth:`PiecePicker.pick_blocks` for up to ``count`` blocks that peer can
serve, in this order:

1. pieces with a deadline (streaming), earliest deadline first; once a
   deadline is less than ``critical_seconds`` away its blocks may also be
   requested from a second peer (time-critical duplicates);
2. pieces already in progress, oldest first, so pieces complete (and can be
   shared) instead of many being half done;
3. pieces in the prefetch window, rarest first;
4. unless the picker is restricted to the priority window: new pieces,
   chosen at random until we have ``random_first_pieces`` complete pieces
   (anything to trade, fast), then rarest first with ties broken by a
   per-picker random order;
5. strict end game: only when every missing block is already requested,
   blocks outstanding with other peers are requested again (at most
   ``end_game_duplicates`` requesters per block); the first copy to arrive
   wins and :meth:`block_received` names the peers to cancel.

A complete piece is not ours until the shell verified its hash and called
:meth:`piece_passed`; :meth:`piece_failed` resets it and returns the peers
that contributed, for blame. Time comes in as ``now``; randomness from the
``random.Random`` given at construction. Nothing here does I/O.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass

from seedcast.peer.messages import BLOCK_SIZE, BlockRef

__all__ = ["BlockOutcome", "PickerStatistics", "PiecePicker"]

PeerKey = Hashable

_FREE = 0
_REQUESTED = 1
_RECEIVED = 2


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    accepted: bool
    """False for a duplicate (end game, late arrival) or a piece we no longer need."""
    piece_complete: bool
    """Every block of the piece is here: verify it, then piece_passed / piece_failed."""
    cancel: tuple[tuple[PeerKey, BlockRef], ...] = ()
    """Other peers this block is still requested from (end game): send them a cancel."""


@dataclass(frozen=True, slots=True)
class PickerStatistics:
    pieces_have: int
    pieces_total: int
    pieces_in_progress: int
    blocks_requested: int
    end_game: bool
    peers: int


def _bits(value: int) -> list[int]:
    """The positions of the set bits of ``value``, lowest first."""
    positions = []
    while value:
        lowest = value & -value
        positions.append(lowest.bit_length() - 1)
        value ^= lowest
    return positions


class _Partial:
    """A piece in progress."""

    __slots__ = (
        "contributors",
        "exclusive",
        "free",
        "index",
        "owner",
        "received",
        "requested_at",
        "requesters",
        "sizes",
        "state",
    )

    def __init__(self, index: int, piece_size: int, block_size: int) -> None:
        self.index = index
        count = (piece_size + block_size - 1) // block_size
        self.sizes = [block_size] * count
        self.sizes[-1] = piece_size - block_size * (count - 1)
        self.state = bytearray(count)
        self.requesters: list[list[PeerKey]] = [[] for _ in range(count)]
        self.requested_at = [0.0] * count
        self.free = count
        self.received = 0
        self.contributors: set[PeerKey] = set()
        self.exclusive = False
        """After a hash failure the piece is fetched again from one peer (parole)."""
        self.owner: PeerKey | None = None

    def open_to(self, peer: PeerKey) -> bool:
        return not self.exclusive or self.owner is None or self.owner == peer

    def release_if_idle(self) -> None:
        if self.exclusive and self.received == 0 and self.free == len(self.state):
            self.owner = None


class PiecePicker:
    """See the module docstring. ``piece_sizes[i]`` is the length of piece ``i``."""

    def __init__(
        self,
        piece_sizes: Sequence[int],
        *,
        rng: random.Random,
        have: Iterable[int] = (),
        block_size: int = BLOCK_SIZE,
        random_first_pieces: int = 4,
        end_game_duplicates: int = 2,
        critical_seconds: float = 2.0,
    ) -> None:
        self._sizes = list(piece_sizes)
        self.num_pieces = len(self._sizes)
        self._rng = rng
        self._block_size = block_size
        self.random_first_pieces = random_first_pieces
        self.end_game_duplicates = end_game_duplicates
        self.critical_seconds = critical_seconds
        self._have = bytearray(self.num_pieces)
        self._have_count = 0
        for index in have:
            if not self._have[index]:
                self._have[index] = 1
                self._have_count += 1
        self._availability = [0] * self.num_pieces
        order = list(range(self.num_pieces))
        rng.shuffle(order)
        self._rank = [0] * self.num_pieces
        for position, index in enumerate(order):
            self._rank[index] = position
        self._peer_pieces: dict[PeerKey, bytearray] = {}
        self._peer_interesting: dict[PeerKey, int] = {}
        self._peer_counts: dict[PeerKey, int] = {}
        self._peer_requests: dict[PeerKey, set[tuple[int, int]]] = {}
        self._partials: dict[int, _Partial] = {}
        self._open: dict[int, _Partial] = {}
        self._exhausted: set[PeerKey] = set()
        """Peers that had no new piece for us at the last look."""
        """Partials with free blocks, oldest first."""
        self._free_blocks = 0
        self._rarest: list[int] = []
        self._rarest_at = -1e18
        self._peer_bits: dict[PeerKey, int] = {}
        self._have_bits = sum(1 << index for index, flag in enumerate(self._have) if flag)
        self._partial_bits = 0
        self.rarest_refresh = 0.5
        """Seconds the rarest-first order may be reused before it is sorted again."""
        self._deadlines: dict[int, float] = {}
        self._window: list[int] = []
        self.restrict_to_priority = False
        """When True only deadline and window pieces are picked (a streaming viewer)."""

    # -- our pieces -----------------------------------------------------------

    def has(self, index: int) -> bool:
        return bool(self._have[index])

    @property
    def have_count(self) -> int:
        return self._have_count

    @property
    def complete(self) -> bool:
        return self._have_count == self.num_pieces

    def have_flags(self) -> bytes:
        """One byte per piece, 1 = we have it (verified)."""
        return bytes(self._have)

    def missing(self, indices: Iterable[int]) -> list[int]:
        return [index for index in indices if not self._have[index]]

    @property
    def in_end_game(self) -> bool:
        unstarted = self.num_pieces - self._have_count - len(self._partials)
        return unstarted == 0 and self._free_blocks == 0 and bool(self._partials)

    # -- peers ------------------------------------------------------------------

    def add_peer(self, peer: PeerKey) -> None:
        if peer in self._peer_pieces:
            return
        self._peer_pieces[peer] = bytearray(self.num_pieces)
        self._peer_interesting[peer] = 0
        self._peer_counts[peer] = 0
        self._peer_bits[peer] = 0
        self._peer_requests[peer] = set()

    def remove_peer(self, peer: PeerKey) -> None:
        """Forget ``peer``: its pieces leave the availability, its requests go back."""
        pieces = self._peer_pieces.pop(peer, None)
        if pieces is None:
            return
        availability = self._availability
        for index, flag in enumerate(pieces):
            if flag:
                availability[index] -= 1
        del self._peer_interesting[peer]
        del self._peer_counts[peer]
        del self._peer_bits[peer]
        self._exhausted.discard(peer)
        for index, block_number in self._peer_requests.pop(peer):
            self._unrequest(peer, index, block_number)
        for partial in self._partials.values():
            if partial.exclusive and partial.owner == peer:
                # A piece on parole loses what its owner delivered: start over.
                for block_number, current in enumerate(partial.state):
                    if current == _RECEIVED:
                        partial.state[block_number] = _FREE
                        self._change_free(partial, 1)
                partial.received = 0
                partial.contributors = set()
                partial.owner = None

    def peer_has(self, peer: PeerKey, index: int) -> bool:
        """Record a HAVE; True when this makes the piece one we want from it."""
        pieces = self._peer_pieces[peer]
        if pieces[index]:
            return False
        pieces[index] = 1
        self._availability[index] += 1
        self._peer_counts[peer] += 1
        self._peer_bits[peer] |= 1 << index
        if not self._have[index]:
            self._peer_interesting[peer] += 1
            self._exhausted.discard(peer)
            return True
        return False

    def peer_has_pieces(self, peer: PeerKey, indices: Iterable[int]) -> None:
        for index in indices:
            self.peer_has(peer, index)

    def peer_has_all(self, peer: PeerKey) -> None:
        pieces = self._peer_pieces[peer]
        availability = self._availability
        for index in range(self.num_pieces):
            if not pieces[index]:
                pieces[index] = 1
                availability[index] += 1
        self._peer_counts[peer] = self.num_pieces
        self._peer_bits[peer] = (1 << self.num_pieces) - 1
        self._peer_interesting[peer] = self.num_pieces - self._have_count
        self._exhausted.discard(peer)

    def peer_has_piece(self, peer: PeerKey, index: int) -> bool:
        pieces = self._peer_pieces.get(peer)
        return pieces is not None and bool(pieces[index])

    def peer_piece_count(self, peer: PeerKey) -> int:
        return self._peer_counts.get(peer, 0)

    def peer_is_seed(self, peer: PeerKey) -> bool:
        return self._peer_counts.get(peer, 0) == self.num_pieces

    def is_interesting(self, peer: PeerKey) -> bool:
        """Does ``peer`` have a piece we lack?"""
        return self._peer_interesting.get(peer, 0) > 0

    def availability(self, index: int) -> int:
        return self._availability[index]

    def requests_of(self, peer: PeerKey) -> list[BlockRef]:
        result = []
        for index, block_number in self._peer_requests.get(peer, ()):
            partial = self._partials.get(index)
            if partial is not None:
                result.append(self._block_ref(partial, block_number))
        return result

    def request_count(self, peer: PeerKey) -> int:
        return len(self._peer_requests.get(peer, ()))

    # -- priorities (streaming) -----------------------------------------------------

    def set_deadline(self, index: int, deadline: float) -> None:
        """Piece ``index`` is needed by ``deadline`` (same clock as ``now``): picked first."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range")
        self._deadlines[index] = deadline

    def clear_deadline(self, index: int) -> None:
        self._deadlines.pop(index, None)

    def deadlines(self) -> dict[int, float]:
        return dict(self._deadlines)

    def set_window(self, indices: Iterable[int]) -> None:
        """The prefetch window: picked after deadline pieces, rarest first."""
        self._window = [index for index in indices if 0 <= index < self.num_pieces]

    def clear_priorities(self) -> None:
        self._deadlines.clear()
        self._window = []

    def overdue(self, now: float, margin: float = 0.0) -> list[tuple[int, float]]:
        """Missing deadline pieces due within ``margin`` seconds (or late), earliest first."""
        due = [
            (index, deadline)
            for index, deadline in self._deadlines.items()
            if not self._have[index] and deadline - now <= margin
        ]
        due.sort(key=lambda item: item[1])
        return due

    # -- picking ----------------------------------------------------------------

    def pick_blocks(
        self,
        peer: PeerKey,
        count: int,
        now: float,
        *,
        only: Collection[int] | None = None,
        suggested: Iterable[int] = (),
    ) -> list[BlockRef]:
        """Up to ``count`` blocks to request from ``peer`` now (marked requested).

        ``only``: pick from these pieces alone (BEP 6 allowed-fast pieces while
        the peer chokes us). ``suggested``: pieces the peer suggested (BEP 6
        suggest-piece), started before any other new piece.
        """
        pieces = self._peer_pieces.get(peer)
        if pieces is None or count <= 0 or self.complete:
            return []
        picked: list[BlockRef] = []
        have = self._have
        if only is not None:
            wanted = set(self._deadlines) | set(self._window) if self.restrict_to_priority else None
            for index in only:
                if wanted is not None and index not in wanted:
                    continue  # a streaming viewer takes only what it will play soon
                if 0 <= index < self.num_pieces and not have[index] and pieces[index]:
                    self._take_from(
                        peer, self._partial(index), count, now, picked, duplicates=False
                    )
                    if len(picked) >= count:
                        break
            return picked

        if self._deadlines:
            for index, deadline in sorted(self._deadlines.items(), key=lambda item: item[1]):
                if have[index] or not pieces[index]:
                    continue
                critical = deadline - now <= self.critical_seconds
                self._take_from(peer, self._partial(index), count, now, picked, duplicates=critical)
                if len(picked) >= count:
                    return picked

        for partial in list(self._open.values()):
            if partial.free and pieces[partial.index]:
                self._take_from(peer, partial, count, now, picked, duplicates=False)
                if len(picked) >= count:
                    return picked

        if self._window:
            window = [
                i for i in self._window if not have[i] and pieces[i] and i not in self._partials
            ]
            window.sort(key=self._availability.__getitem__)
            for index in window:
                self._take_from(peer, self._partial(index), count, now, picked, duplicates=False)
                if len(picked) >= count:
                    return picked

        if not self.restrict_to_priority:
            for index in suggested:
                fresh = index not in self._partials
                if fresh and 0 <= index < self.num_pieces and not have[index] and pieces[index]:
                    self._take_from(
                        peer, self._partial(index), count, now, picked, duplicates=False
                    )
                    if len(picked) >= count:
                        return picked

        if not self.restrict_to_priority and peer not in self._exhausted:
            while len(picked) < count:
                new_index = self._new_piece_for(peer, now)
                if new_index is None:
                    # Nothing new from this peer until it announces more pieces.
                    self._exhausted.add(peer)
                    break
                partial = self._partial(new_index)
                self._take_from(peer, partial, count, now, picked, duplicates=False)

        if len(picked) < count and self.in_end_game:
            self._take_end_game(peer, pieces, count, now, picked)
        return picked

    def _new_piece_for(self, peer: PeerKey, now: float) -> int | None:
        # Candidates as one big-int bitset (bit i = piece i): what the peer has,
        # minus what we have or have started. Cheap even for thousands of pieces.
        candidates = self._peer_bits[peer] & ~(self._have_bits | self._partial_bits)
        if not candidates:
            return None
        if self._have_count < self.random_first_pieces:
            return self._rng.choice(_bits(candidates))
        if candidates.bit_count() <= 64:
            availability = self._availability
            rank = self._rank
            return min(_bits(candidates), key=lambda index: (availability[index], rank[index]))
        # Many candidates: the first in the rarest-first order comes quickly.
        if now - self._rarest_at > self.rarest_refresh or now < self._rarest_at:
            availability = self._availability
            rank = self._rank
            scale = self.num_pieces
            keys = [availability[index] * scale + rank[index] for index in range(scale)]
            have = self._have
            self._rarest = sorted(
                (index for index in range(scale) if not have[index]), key=keys.__getitem__
            )
            self._rarest_at = now
        for index in self._rarest:
            if candidates >> index & 1:
                return index
        return None

    def _partial(self, index: int) -> _Partial:
        partial = self._partials.get(index)
        if partial is None:
            partial = _Partial(index, self._sizes[index], self._block_size)
            self._partials[index] = partial
            self._partial_bits |= 1 << index
            free = partial.free
            partial.free = 0
            self._change_free(partial, free)
        return partial

    def _take_from(
        self,
        peer: PeerKey,
        partial: _Partial,
        count: int,
        now: float,
        picked: list[BlockRef],
        *,
        duplicates: bool,
    ) -> None:
        if not partial.open_to(peer):
            return
        state = partial.state
        for block_number in range(len(state)):
            if len(picked) >= count:
                return
            current = state[block_number]
            if current == _FREE or (
                duplicates
                and current == _REQUESTED
                and peer not in partial.requesters[block_number]
                and len(partial.requesters[block_number]) < self.end_game_duplicates
            ):
                self._request(peer, partial, block_number, now)
                picked.append(self._block_ref(partial, block_number))

    def _take_end_game(
        self, peer: PeerKey, pieces: bytearray, count: int, now: float, picked: list[BlockRef]
    ) -> None:
        candidates = []
        for partial in self._partials.values():
            if not pieces[partial.index] or not partial.open_to(peer):
                continue
            for block_number, current in enumerate(partial.state):
                requesters = partial.requesters[block_number]
                if (
                    current == _REQUESTED
                    and peer not in requesters
                    and len(requesters) < self.end_game_duplicates
                ):
                    candidates.append(
                        (len(requesters), partial.requested_at[block_number], partial, block_number)
                    )
        candidates.sort(key=lambda item: (item[0], item[1]))
        for _, _, partial, block_number in candidates[: count - len(picked)]:
            self._request(peer, partial, block_number, now)
            picked.append(self._block_ref(partial, block_number))

    def _request(self, peer: PeerKey, partial: _Partial, block_number: int, now: float) -> None:
        if partial.exclusive and partial.owner is None:
            partial.owner = peer
        if partial.state[block_number] == _FREE:
            partial.state[block_number] = _REQUESTED
            self._change_free(partial, -1)
            partial.requested_at[block_number] = now
        partial.requesters[block_number].append(peer)
        self._peer_requests[peer].add((partial.index, block_number))

    def _unrequest(self, peer: PeerKey, index: int, block_number: int) -> None:
        partial = self._partials.get(index)
        if partial is None:
            return
        requesters = partial.requesters[block_number]
        if peer in requesters:
            requesters.remove(peer)
        if not requesters and partial.state[block_number] == _REQUESTED:
            partial.state[block_number] = _FREE
            self._change_free(partial, 1)
            partial.release_if_idle()

    def _change_free(self, partial: _Partial, delta: int) -> None:
        """Every change of a partial's free block count goes through here."""
        partial.free += delta
        self._free_blocks += delta
        if partial.free:
            self._open[partial.index] = partial
        else:
            self._open.pop(partial.index, None)

    def _block_ref(self, partial: _Partial, block_number: int) -> BlockRef:
        return BlockRef(partial.index, block_number * self._block_size, partial.sizes[block_number])

    def _locate(self, block: BlockRef) -> tuple[_Partial, int] | None:
        partial = self._partials.get(block.index)
        if partial is None or block.begin % self._block_size:
            return None
        block_number = block.begin // self._block_size
        if block_number >= len(partial.sizes) or partial.sizes[block_number] != block.length:
            return None
        return partial, block_number

    # -- outcomes ---------------------------------------------------------------

    def cancel_request(self, peer: PeerKey, block: BlockRef) -> None:
        """The request of ``block`` to ``peer`` is gone (rejected, dropped, timed out)."""
        requests = self._peer_requests.get(peer)
        if requests is None:
            return
        key = (block.index, block.begin // self._block_size)
        if key in requests:
            requests.discard(key)
            self._unrequest(peer, *key)

    def block_received(self, peer: PeerKey, block: BlockRef) -> BlockOutcome:
        """``peer`` delivered ``block``. Store the data only when ``accepted``."""
        requests = self._peer_requests.get(peer)
        if requests is not None:
            requests.discard((block.index, block.begin // self._block_size))
        located = self._locate(block)
        if located is None or self._have[block.index]:
            return BlockOutcome(accepted=False, piece_complete=False)
        partial, block_number = located
        requesters = partial.requesters[block_number]
        if peer in requesters:
            requesters.remove(peer)
        if partial.state[block_number] == _RECEIVED:
            return BlockOutcome(accepted=False, piece_complete=False)
        if partial.state[block_number] == _FREE:
            self._change_free(partial, -1)
        partial.state[block_number] = _RECEIVED
        partial.received += 1
        partial.contributors.add(peer)
        cancel = tuple((other, block) for other in requesters)
        for other in requesters:
            other_requests = self._peer_requests.get(other)
            if other_requests is not None:
                other_requests.discard((block.index, block_number))
        requesters.clear()
        return BlockOutcome(
            accepted=True,
            piece_complete=partial.received == len(partial.state),
            cancel=cancel,
        )

    def piece_passed(self, index: int) -> list[tuple[PeerKey, BlockRef]]:
        """Piece ``index`` is verified and stored (from peers or elsewhere).

        Returns the requests still outstanding for it, to cancel.
        """
        if self._have[index]:
            return []
        self._have[index] = 1
        self._have_count += 1
        self._have_bits |= 1 << index
        self._partial_bits &= ~(1 << index)
        self._deadlines.pop(index, None)
        for peer, pieces in self._peer_pieces.items():
            if pieces[index]:
                self._peer_interesting[peer] -= 1
        partial = self._partials.pop(index, None)
        outstanding: list[tuple[PeerKey, BlockRef]] = []
        if partial is not None:
            self._change_free(partial, -partial.free)
            for block_number, requesters in enumerate(partial.requesters):
                for peer in requesters:
                    outstanding.append((peer, self._block_ref(partial, block_number)))
                    peer_requests = self._peer_requests.get(peer)
                    if peer_requests is not None:
                        peer_requests.discard((index, block_number))
        return outstanding

    def piece_failed(self, index: int) -> set[PeerKey]:
        """Piece ``index`` failed its hash: start it over; returns who contributed.

        The piece is then fetched from a single peer (the first to take a
        block of it), so the next attempt tells an honest peer from a liar.
        """
        partial = self._partials.get(index)
        if partial is None:
            return set()
        contributors = partial.contributors
        partial.contributors = set()
        for block_number, current in enumerate(partial.state):
            if current == _RECEIVED:
                partial.state[block_number] = _FREE
                self._change_free(partial, 1)
        partial.received = 0
        partial.exclusive = True
        partial.owner = None
        return contributors

    def stalled(self, now: float, timeout: float) -> list[tuple[PeerKey, BlockRef]]:
        """Requests outstanding for longer than ``timeout`` seconds."""
        result: list[tuple[PeerKey, BlockRef]] = []
        for partial in self._partials.values():
            for block_number, current in enumerate(partial.state):
                if current == _REQUESTED and now - partial.requested_at[block_number] > timeout:
                    block = self._block_ref(partial, block_number)
                    result.extend((peer, block) for peer in partial.requesters[block_number])
        return result

    def statistics(self) -> PickerStatistics:
        return PickerStatistics(
            pieces_have=self._have_count,
            pieces_total=self.num_pieces,
            pieces_in_progress=len(self._partials),
            blocks_requested=sum(len(requests) for requests in self._peer_requests.values()),
            end_game=self.in_end_game,
            peers=len(self._peer_pieces),
        )
