"""The aggregator's side of one secure round: collect keys, route sealed shares, name
survivors, rebuild the secrets it is owed, and say how to remove the masks.

It only ever holds public keys, ciphertext, masked sums, and, at the end, the
self-mask seeds of survivors and the mask keys of sites that dropped after sharing:
never both for one site, so no single update can be unmasked. Every message is
checked against the sender's place in the graph; sizes and counts are bounded.
Synchronous and free of gRPC: fedsov.node.secure drives it from the round.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedsov.exceptions import ProtocolError, SecureAggregation
from fedsov.messages import RevealedShare, SealedShare, SecAggKeys, SecAggParams
from fedsov.secagg import keys as kx
from fedsov.secagg.graph import random_graph
from fedsov.secagg.shamir import SHARE_BYTES, combine

__all__ = ["SEALED_BYTES", "RegionRound", "Unmasking"]

SEALED_BYTES = 12 + 2 + 2 * SHARE_BYTES + 16  # nonce, x, two shares, GCM tag
_MAX_TRIES = 64  # subsets of shares tried when a hostile survivor sent a bad one

log = logging.getLogger("fedsov.secagg")


def _subsets(holders: list[str], t: int) -> Iterator[tuple[str, ...]]:
    """t-subsets of ``holders`` to try: first the cyclic windows of t consecutive ones
    (one bad share lies outside all but t of them), then every combination (whose
    first ones all share the first holders: alone, one bad share there blocks them)."""
    m = len(holders)
    if m > t:
        for i in range(m):
            yield tuple(holders[(i + j) % m] for j in range(t))
    yield from itertools.combinations(holders, t)


@dataclass(frozen=True)
class Unmasking:
    """What removing the masks takes: (seed, sign) to add to the sum, and who is in it."""

    corrections: tuple[tuple[bytes, int], ...]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]


@dataclass
class RegionRound:
    params: SecAggParams
    round: int
    sites: frozenset[str]  # the round's selected sites
    keys: dict[str, SecAggKeys] = field(default_factory=dict)  # U1
    graph: dict[str, tuple[str, ...]] = field(default_factory=dict)
    inbox: dict[str, dict[str, bytes]] = field(default_factory=dict)  # to -> from -> sealed
    sharers: set[str] = field(default_factory=set)  # U2
    survivors: tuple[str, ...] | None = None  # U3, once named
    dropped: tuple[str, ...] = ()
    _seed_shares: dict[str, dict[str, bytes]] = field(default_factory=dict)  # owner->holder
    _key_shares: dict[str, dict[str, bytes]] = field(default_factory=dict)
    _revealed: set[str] = field(default_factory=set)
    stage: str = "advertise"

    # ----- 1. keys ------------------------------------------------------------------

    def advertise(self, site: str, keys: SecAggKeys) -> None:
        self._expect(site, "advertise")
        if keys.name != site:
            raise ProtocolError(f"secure aggregation: {site!r} advertised keys of {keys.name!r}")
        for what, value in (("cipher", keys.cipher_key), ("mask", keys.mask_key)):
            if len(value) != kx.KEY_BYTES:
                raise ProtocolError(f"secure aggregation: the {what} key has {len(value)} bytes")
        if len(keys.commitment) != 32:
            raise ProtocolError("secure aggregation: a commitment is a 32-byte SHA-256")
        known = self.keys.get(site)
        if known is not None and known != keys:
            raise ProtocolError(f"secure aggregation: {site!r} advertised other keys already")
        self.keys[site] = keys

    def close_advertising(self) -> None:
        """Pair the sites that sent keys on a random graph; too few fail the round."""
        self.stage = "share"
        self._at_least(len(self.keys), "sent keys")
        self.graph = random_graph(sorted(self.keys), self.params.neighbours)

    def neighbours(self, site: str) -> tuple[SecAggKeys, ...]:
        if site not in self.graph:
            raise SecureAggregation(
                f"secure aggregation: {site!r} sent no keys in time", code="secagg-late"
            )
        return tuple(self.keys[n] for n in self.graph[site])

    # ----- 2. sealed shares ---------------------------------------------------------

    def submit_shares(self, site: str, shares: Sequence[SealedShare]) -> None:
        self._expect(site, "share")
        if site not in self.graph:
            raise SecureAggregation(
                f"secure aggregation: {site!r} sent no keys in time", code="secagg-late"
            )
        targets = [s.peer for s in shares]
        if sorted(targets) != list(self.graph[site]):
            raise ProtocolError(
                f"secure aggregation: {site!r} must seal shares for exactly its "
                f"{len(self.graph[site])} neighbours"
            )
        if any(len(s.ciphertext) != SEALED_BYTES for s in shares):
            raise ProtocolError(f"secure aggregation: a sealed share has {SEALED_BYTES} bytes")
        if site in self.sharers:
            return  # sent again (a retry): the first copy stands
        for sealed in shares:
            self.inbox.setdefault(sealed.peer, {})[site] = sealed.ciphertext
        self.sharers.add(site)

    def close_sharing(self) -> None:
        self.stage = "upload"
        self._at_least(len(self.sharers), "sent their shares")

    def shares_for(self, site: str) -> tuple[SealedShare, ...]:
        """What the site's neighbours that shared sealed for it."""
        if site not in self.sharers:
            raise SecureAggregation(
                f"secure aggregation: {site!r} sent no shares in time", code="secagg-late"
            )
        inbox = self.inbox.get(site, {})
        return tuple(
            SealedShare(peer, inbox[peer]) for peer in sorted(inbox) if peer in self.sharers
        )

    def may_upload(self, site: str) -> None:
        if site not in self.sharers or self.stage != "upload":
            raise SecureAggregation(
                f"secure aggregation: {site!r} did not complete the key exchange of round "
                f"{self.round}; its masked update cannot be unmasked",
                code="secagg-late",
            )

    # ----- 3. survivors and reveals -------------------------------------------------

    def name_survivors(self, uploaded: Iterable[str]) -> None:
        """The sites whose masked update is in the sum; below the threshold, fail."""
        alive = sorted(set(uploaded) & self.sharers)
        self.survivors = tuple(alive)
        self.dropped = tuple(sorted(self.sharers - set(alive)))
        self.stage = "reveal"
        self._at_least(len(alive), "uploaded a masked update", code="secagg-too-few-survivors")

    def submit_reveals(self, site: str, reveals: Sequence[RevealedShare]) -> None:
        self._expect(site, "reveal")
        survivors = set(self.survivors or ())
        if site not in survivors:
            raise ProtocolError(f"secure aggregation: {site!r} is not a survivor of this round")
        if site in self._revealed:
            return
        held = {site} | set(self.inbox.get(site, {})) & self.sharers  # whose shares it holds
        seen: set[str] = set()
        for r in reveals:
            if r.owner not in held or r.owner in seen or len(r.value) != SHARE_BYTES:
                raise ProtocolError(f"secure aggregation: {site!r} revealed an unexpected share")
            if r.mask_key != (r.owner not in survivors) or (r.owner == site and r.mask_key):
                raise ProtocolError(f"secure aggregation: {site!r} revealed the wrong secret")
            seen.add(r.owner)
        self._revealed.add(site)
        for r in reveals:
            book = self._key_shares if r.mask_key else self._seed_shares
            book.setdefault(r.owner, {})[site] = r.value

    @property
    def revealed(self) -> frozenset[str]:
        """The survivors whose shares are in."""
        return frozenset(self._revealed)

    def recoverable(self) -> bool:
        """Whether every secret the unmasking needs has ``threshold`` shares in."""
        t = self.params.threshold
        return all(len(self._seed_shares.get(s, {})) >= t for s in self.survivors or ()) and all(
            len(self._key_shares.get(s, {})) >= t for s in self.dropped
        )

    def unmasking(self) -> Unmasking:
        """Rebuild the secrets and list the masks to remove; SecureAggregation if it
        cannot (a secret with fewer than ``threshold`` shares, or none that check)."""
        if self.survivors is None:
            raise RuntimeError("name_survivors() first")
        corrections: list[tuple[bytes, int]] = []
        for site in self.survivors:
            seed = self._rebuild(site, self._seed_shares, self._seed_checks(site))
            corrections.append((seed, -1))
        survivors = set(self.survivors)
        for gone in self.dropped:
            raw = self._rebuild(gone, self._key_shares, self._key_checks(gone))
            key = X25519PrivateKey.from_private_bytes(raw)
            for site in sorted(survivors & set(self.graph[gone])):
                if gone not in self.inbox.get(site, {}):
                    continue  # it never held this one's shares: it did not mask with it
                seed = kx.agree(
                    key, self.keys[site].mask_key, info=kx.pair_info(self.round, site, gone)
                )
                # site added +mask if site < gone, else -mask: take it out again
                corrections.append((seed, -1 if site < gone else +1))
        self.stage = "done"
        return Unmasking(tuple(corrections), self.survivors, self.dropped)

    # ----- helpers ------------------------------------------------------------------

    def _seed_checks(self, site: str) -> object:
        commitment = self.keys[site].commitment
        return lambda seed: kx.commit(seed, round=self.round, site=site) == commitment

    def _key_checks(self, site: str) -> object:
        public = self.keys[site].mask_key
        return lambda raw: kx.public_bytes(X25519PrivateKey.from_private_bytes(raw)) == public

    def _rebuild(self, owner: str, book: dict[str, dict[str, bytes]], check: object) -> bytes:
        """``owner``'s secret from ``threshold`` of its shares, checked against what it
        advertised; other subsets are tried (bounded) when a share was bad."""
        t = self.params.threshold
        shares = book.get(owner, {})
        if len(shares) < t:
            raise SecureAggregation(
                f"secure aggregation: {owner!r}'s secret has {len(shares)} of the {t} shares "
                "needed; the round cannot be unmasked",
                code="secagg-unrecoverable",
            )
        holders = sorted([owner, *self.graph[owner]])
        x_of = {h: x for x, h in enumerate(holders, start=1)}
        assert callable(check)
        for subset in itertools.islice(_subsets(sorted(shares), t), _MAX_TRIES):
            try:
                secret = combine({x_of[h]: shares[h] for h in subset})
            except ProtocolError:
                continue
            if check(secret):
                return secret
        raise SecureAggregation(
            f"secure aggregation: the shares of {owner!r}'s secret do not rebuild what it "
            "committed to (a survivor sent a bad share)",
            code="secagg-bad-share",
        )

    def _expect(self, site: str, stage: str) -> None:
        if site not in self.sites:
            raise ProtocolError(f"secure aggregation: {site!r} has no task in round {self.round}")
        if self.stage != stage:
            raise SecureAggregation(
                f"secure aggregation: round {self.round} is past its {stage} stage "
                f"(now: {self.stage})",
                code="secagg-late",
            )

    def _at_least(self, count: int, what: str, *, code: str = "secagg-too-few-sites") -> None:
        t = self.params.threshold
        if count < t:
            raise SecureAggregation(
                f"secure aggregation: only {count} sites {what}, the threshold is {t}; "
                "the round exports nothing",
                code=code,
            )
