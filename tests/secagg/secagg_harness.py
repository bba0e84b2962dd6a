"""An in-process SecAgg+ round for the tests of tests/secagg: sites and a region, no gRPC.

``play`` runs every stage (keys, shares, masked uploads folded through the codec's
``PayloadReader`` into a ``RingSum``, survivors, reveals, unmasking) and can drop
sites after sharing or after uploading, or let a hook tamper with the reveals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedsov.codec import EncodedTensors, Manifest, PayloadReader, encode, iter_chunks
from fedsov.messages import RevealedShare, SecAggParams
from fedsov.secagg import (
    RegionRound,
    RingSum,
    SiteRound,
    Unmasking,
    auto_neighbours,
    decode_sum,
    masked_manifest,
    ring_bits,
)

ROUND = 3
PRECISION = 24
CLIP = 10.0

Updates = dict[str, dict[str, np.ndarray]]
RevealHook = Callable[[str, tuple[RevealedShare, ...]], Sequence[RevealedShare]]


def names(n: int) -> list[str]:
    return [f"s{i:02d}" for i in range(n)]


def updates(n: int, d: int = 2000, *, seed: int = 0, scale: float = 0.01) -> Updates:
    """n float32 updates of two tensors (d and 10 elements), norms far below ``CLIP``."""
    rng = np.random.default_rng(seed)
    return {
        s: {
            "w": rng.normal(0.0, scale, (d,)).astype(np.float32),
            "b": rng.normal(0.0, scale, (10,)).astype(np.float32),
        }
        for s in names(n)
    }


def model_of(ups: Updates) -> Manifest:
    first = next(iter(ups.values()))
    return encode({k: np.zeros_like(v) for k, v in first.items()}).manifest


def params(
    n: int,
    *,
    weighted: bool = True,
    max_weight: int = 1000,
    threshold: int = 0,
    neighbours: int = 0,
    clip: float = CLIP,
) -> SecAggParams:
    """k = auto_neighbours(n) and, unless given, t = ceil((k + 1) / 2): half the holders,
    lower than the engine's strict-majority default, so 5 of 10 sites may drop."""
    k = neighbours or auto_neighbours(n)
    bits = ring_bits(sites=n, max_weight=max_weight if weighted else 1, precision_bits=PRECISION)
    return SecAggParams(
        threshold=threshold or math.ceil((k + 1) / 2),
        neighbours=k,
        ring_bits=bits,
        precision_bits=PRECISION,
        clip=clip,
        weighted=weighted,
        stage_timeout_s=5.0,
    )


def fold_into(ring: RingSum, encoded: EncodedTensors) -> None:
    """One masked upload through the codec's checks, chunk by chunk, into the sum."""
    reader = PayloadReader(ring.manifest, size=encoded.size, sha256=encoded.sha256)
    for chunk in iter_chunks(encoded.payload, 4096):
        for segment in reader.feed(chunk):
            ring.fold(segment)
    reader.finish()


@dataclass
class Played:
    params: SecAggParams
    model: Manifest
    sites: dict[str, SiteRound]
    region: RegionRound
    uploads: dict[str, EncodedTensors] = field(default_factory=dict)  # masked, by site
    reveals: dict[str, tuple[RevealedShare, ...]] = field(default_factory=dict)
    ring: RingSum | None = None
    unmasking: Unmasking | None = None

    def decoded(self, index: int, *, step: float | None = None) -> np.ndarray:
        assert self.ring is not None
        p = self.params
        if step is None:
            step = p.clip * 2.0**-p.precision_bits
        return decode_sum(self.ring.tensor(index), bits=p.ring_bits, step=step)


def setup(ups: Updates, p: SecAggParams) -> Played:
    """Keys and shares exchanged by every site: ready for the masked uploads."""
    model = model_of(ups)
    sites = {s: SiteRound(s, p, round=ROUND) for s in ups}
    region = RegionRound(p, ROUND, frozenset(sites))
    for s, site in sites.items():
        region.advertise(s, site.keys())
    region.close_advertising()
    for s, site in sites.items():
        region.submit_shares(s, site.share(region.neighbours(s)))
    region.close_sharing()
    for s, site in sites.items():
        site.accept_shares(region.shares_for(s))
    return Played(p, model, sites, region)


def play(
    ups: Updates,
    p: SecAggParams,
    weights: Mapping[str, int],
    *,
    drop_before_upload: Collection[str] = (),
    drop_after_upload: Collection[str] = (),
    tamper: RevealHook | None = None,
    unmask: bool = True,
) -> Played:
    """A whole round; ``unmask=False`` stops after the reveals."""
    played = setup(ups, p)
    region = played.region
    mm = masked_manifest(played.model, p.ring_bits)
    played.ring = RingSum(mm, p.ring_bits)
    for s, site in played.sites.items():
        if s in drop_before_upload:
            continue
        encoded = site.mask(ups[s], played.model, weight=weights[s])
        played.uploads[s] = encoded
        fold_into(played.ring, encoded)
    region.name_survivors(played.uploads)
    assert region.survivors is not None
    for s in region.survivors:
        if s in drop_after_upload:
            continue
        reveals = played.sites[s].reveal(region.survivors, region.dropped)
        if tamper is not None:
            reveals = tuple(tamper(s, reveals))
        played.reveals[s] = reveals
        region.submit_reveals(s, reveals)
    if unmask:
        played.unmasking = region.unmasking()
        played.ring.unmask(played.unmasking.corrections)
    return played


def weighted_mean(
    ups: Updates, weights: Mapping[str, float], among: Collection[str], name: str
) -> np.ndarray:
    total = sum(weights[s] for s in among)
    return sum(weights[s] * ups[s][name].astype(np.float64) for s in among) / total


def relative_l2(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))
