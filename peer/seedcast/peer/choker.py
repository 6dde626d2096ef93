"""Sans-IO choker: who we upload to (BitTorrent's tit-for-tat).

How it works. The shell calls :meth:`Choker.decide` often (every second, and
whenever a peer becomes interested or leaves) with a snapshot of the
connected peers and gets back the set to keep unchoked.

* Every ``interval`` (10 s) the regular slots are recomputed.
  Downloading, they are tit-for-tat: the ``regular_slots`` (4) interested
  peers that give us the best download rate. A slot nobody reciprocating
  fills goes to a peer that gave nothing lately only while it is within its
  ``credit`` (what we sent it minus what it sent us, in bytes), least
  indebted first: newcomers can start trading, a free-rider that never
  uploads exhausts its credit and is left to optimistic unchokes alone.
  Peers that snub us (interested in them, nothing received for a minute)
  are left out of regular slots: anti-snubbing.
* Seeding, nobody can reciprocate, so raw download speed must not win (it
  rewards exactly the peers that keep their upload to themselves): the
  default ``round-robin`` policy unchokes the peers we served least so far
  and rotates as soon as a slot holder got ``seed_quota`` bytes more than
  the least served peer waiting, an equal share each, like libtorrent's
  round-robin seed choker; ``fastest-upload`` (those we upload to fastest)
  is kept as an option.
* Between rounds, a slot freed by a peer that left or lost interest, or that
  stays unchoked without asking for anything (``idle``), is filled at once
  with the next best candidate under the same rules.
* One optimistic unchoke (plus one more per snubbing peer, up to the number
  of regular slots) rotates every ``optimistic_interval`` (30 s) to a random
  choked interested peer; peers connected for less than ``new_peer_seconds``
  are ``new_peer_weight`` (3) times as likely, since they have nothing to
  trade yet. While downloading, peers in good standing (they gave us
  something lately, or are within their credit) are picked first; one
  that took more than its credit and gave nothing only when nobody else
  is waiting, so a free-rider doesn't collect optimistic slots either.

Time is ``now``; randomness comes from the ``random.Random`` given.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["ChokeDecision", "Choker", "ChokerPeer", "is_snubbed"]

SNUB_SECONDS = 60.0
SEED_POLICIES = ("fastest-upload", "round-robin")


@dataclass(frozen=True, slots=True)
class ChokerPeer:
    key: Hashable
    interested: bool
    """The peer is interested in what we have."""
    download_rate: float
    """Bytes/s the peer sends us (recent average)."""
    upload_rate: float
    """Bytes/s we send the peer (recent average)."""
    connected_at: float
    snubbed: bool = False
    uploaded: int = 0
    """Bytes we sent the peer so far (round-robin seeding, and its credit)."""
    downloaded: int = 0
    """Bytes the peer sent us so far (its credit)."""
    idle: bool = False
    """Unchoked, interested, yet it asked for nothing lately: everything it
    lacks from us is on its way from others. Its slot goes to another peer."""


@dataclass(frozen=True, slots=True)
class ChokeDecision:
    unchoked: frozenset[Hashable]
    """Every peer that should be unchoked now (regular and optimistic)."""
    optimistic: frozenset[Hashable]


def is_snubbed(now: float, interested_since: float | None, last_block_at: float | None) -> bool:
    """We want data from a peer and got none from it for a minute."""
    if interested_since is None:
        return False
    since = max(interested_since, last_block_at or interested_since)
    return now - since > SNUB_SECONDS


class Choker:
    def __init__(
        self,
        *,
        rng: random.Random,
        regular_slots: int = 4,
        optimistic_slots: int = 1,
        interval: float = 10.0,
        optimistic_interval: float = 30.0,
        new_peer_seconds: float = 60.0,
        new_peer_weight: float = 3.0,
        seed_policy: str = "round-robin",
        credit: int | None = 32 * 1024,
        seed_quota: int = 256 * 1024,
    ) -> None:
        """``credit``: bytes a peer that gives nothing back may get through regular slots
        (None: no limit, the classic choker that fills spare slots with anyone)."""
        if seed_policy not in SEED_POLICIES:
            raise ValueError(f"seed_policy must be one of {', '.join(SEED_POLICIES)}")
        self.seed_policy = seed_policy
        self.credit = credit
        self.seed_quota = seed_quota
        self._rng = rng
        self.regular_slots = regular_slots
        self.optimistic_slots = optimistic_slots
        self.interval = interval
        self.optimistic_interval = optimistic_interval
        self.new_peer_seconds = new_peer_seconds
        self.new_peer_weight = new_peer_weight
        self._regular: list[Hashable] = []
        self._optimistic: list[Hashable] = []
        self._next_round: float | None = None
        self._next_optimistic: float | None = None

    def decide(self, now: float, peers: Sequence[ChokerPeer], *, seeding: bool) -> ChokeDecision:
        by_key = {peer.key: peer for peer in peers}
        interested = {peer.key for peer in peers if peer.interested and not peer.idle}
        self._regular = [key for key in self._regular if key in interested]
        self._optimistic = [key for key in self._optimistic if key in interested]

        candidates = self._candidates(peers, seeding=seeding)
        round_robin = seeding and self.seed_policy == "round-robin"
        # Round-robin seeding rotates every slot already: the optimistic ones too.
        regular_slots = self.regular_slots + (self.optimistic_slots if round_robin else 0)

        if round_robin:
            # Rotate continuously, not every 10 s: a peer keeps its slot until it
            # got ``seed_quota`` bytes more than the least served one waiting.
            self._optimistic = []
            holders = set(self._regular)
            waiting = [peer.uploaded for peer in candidates if peer.key not in holders]
            if waiting:
                limit = min(waiting) + self.seed_quota
                self._regular = [key for key in self._regular if by_key[key].uploaded < limit]
        elif not seeding:
            # Reciprocation is checked at every decision, not once a round: a
            # holder that stopped giving and used up its credit leaves now.
            allowed = {peer.key for peer in candidates}
            self._regular = [key for key in self._regular if key in allowed]
            self._optimistic = [key for key in self._optimistic if not self._exhausted(by_key[key])]
        if self._next_round is None or now >= self._next_round:
            self._regular = [peer.key for peer in candidates[:regular_slots]]
            self._next_round = now + self.interval
            self._optimistic = [key for key in self._optimistic if key not in self._regular]
        elif len(self._regular) < regular_slots:
            for peer in candidates:
                if len(self._regular) >= regular_slots:
                    break
                if peer.key not in self._regular and peer.key not in self._optimistic:
                    self._regular.append(peer.key)

        snubbing = 0 if seeding else sum(1 for key in interested if by_key[key].snubbed)
        slots = 0 if round_robin else self.optimistic_slots + min(snubbing, self.regular_slots)
        rotate = self._next_optimistic is None or now >= self._next_optimistic
        if rotate:
            previous = set(self._optimistic)
            self._optimistic = []
            self._next_optimistic = now + self.optimistic_interval
        else:
            previous = set()
            self._optimistic = self._optimistic[:slots]
        while len(self._optimistic) < slots:
            choice = self._pick_optimistic(now, peers, exclude=previous, seeding=seeding)
            if choice is None and previous:
                previous = set()  # only the previous one is left: keep it
                continue
            if choice is None:
                break
            self._optimistic.append(choice)
        return ChokeDecision(
            unchoked=frozenset(self._regular) | frozenset(self._optimistic),
            optimistic=frozenset(self._optimistic),
        )

    def _candidates(self, peers: Sequence[ChokerPeer], *, seeding: bool) -> list[ChokerPeer]:
        """Who may hold a regular slot, best first."""
        eligible = [
            peer
            for peer in peers
            if peer.interested and not peer.idle and (seeding or not peer.snubbed)
        ]
        # Random tie break: shuffle, then stable sorts.
        self._rng.shuffle(eligible)
        if seeding:
            if self.seed_policy == "round-robin":
                eligible.sort(key=lambda peer: peer.uploaded)
            else:
                eligible.sort(key=lambda peer: peer.upload_rate, reverse=True)
            return eligible
        giving = [peer for peer in eligible if peer.download_rate > 0]
        giving.sort(key=lambda peer: peer.download_rate, reverse=True)
        on_credit = [
            peer
            for peer in eligible
            if peer.download_rate <= 0
            and (self.credit is None or peer.uploaded - peer.downloaded < self.credit)
        ]
        on_credit.sort(key=lambda peer: peer.uploaded - peer.downloaded)
        return giving + on_credit

    def _exhausted(self, peer: ChokerPeer) -> bool:
        """An optimistic pick that took two credits and gave nothing: its chance is over."""
        if peer.download_rate > 0 or self.credit is None:
            return False
        return peer.uploaded - peer.downloaded >= 2 * self.credit

    def _in_good_standing(self, peer: ChokerPeer) -> bool:
        if peer.download_rate > 0 or self.credit is None:
            return True
        return peer.uploaded - peer.downloaded < self.credit

    def _pick_optimistic(
        self,
        now: float,
        peers: Sequence[ChokerPeer],
        *,
        exclude: set[Hashable],
        seeding: bool,
    ) -> Hashable | None:
        pool = [
            peer
            for peer in peers
            if peer.interested
            and not peer.idle
            and peer.key not in self._regular
            and peer.key not in self._optimistic
            and peer.key not in exclude
        ]
        if not pool:
            return None
        if not seeding:
            standing = [peer for peer in pool if self._in_good_standing(peer)]
            pool = standing or pool
        weights = [
            self.new_peer_weight if now - peer.connected_at < self.new_peer_seconds else 1.0
            for peer in pool
        ]
        return self._rng.choices(pool, weights=weights)[0].key
