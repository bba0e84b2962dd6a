"""What the aggregator sees: every byte a RegionRound (and its ring sum) is handed.

None of it shows a site's update in the clear, not even once the self-mask of a
survivor is removed (its pairwise masks remain), and for no site does it hold shares
of both its self-mask seed and its mask key. Raw secrets never travel at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from secagg_harness import CLIP, PRECISION, fold_into, model_of, params, updates

from fedsov.codec import EncodedTensors
from fedsov.messages import RevealedShare, SealedShare, SecAggKeys
from fedsov.secagg import RegionRound, RingSum, SiteRound, decode_sum, masked_manifest
from fedsov.secagg import keys as kx
from fedsov.secagg.prg import MaskStream, add_mask
from fedsov.secagg.quantize import RING_DTYPES

N = 10
D = 5000
BEFORE, AFTER = {"s01", "s06"}, {"s03"}  # drop after sharing, drop after uploading


@dataclass
class Seen:
    """Everything the aggregator received, by kind."""

    keys: list[SecAggKeys] = field(default_factory=list)
    sealed: list[tuple[str, SealedShare]] = field(default_factory=list)
    uploads: dict[str, EncodedTensors] = field(default_factory=dict)
    reveals: list[tuple[str, RevealedShare]] = field(default_factory=list)

    def blob(self) -> bytes:
        parts: list[bytes] = []
        for k in self.keys:
            parts += [k.name.encode(), k.cipher_key, k.mask_key, k.commitment]
        for sender, s in self.sealed:
            parts += [sender.encode(), s.peer.encode(), s.ciphertext]
        parts += [bytes(u.payload) for u in self.uploads.values()]
        for sender, r in self.reveals:
            parts += [sender.encode(), r.owner.encode(), bytes([r.mask_key]), r.value]
        return b"|".join(parts)


@dataclass
class Round:
    ups: dict[str, dict[str, np.ndarray]]
    weights: dict[str, int]
    sites: dict[str, SiteRound]
    region: RegionRound
    ring: RingSum
    seen: Seen


@pytest.fixture(scope="module")
def played() -> Round:
    ups = updates(N, d=D, seed=31)
    model = model_of(ups)
    p = params(N)
    assert p.ring_bits == 64
    weights = {s: 20 + 9 * i for i, s in enumerate(ups)}
    seen = Seen()
    sites = {s: SiteRound(s, p, round=3) for s in ups}
    region = RegionRound(p, 3, frozenset(sites))
    for s, site in sites.items():
        keys = site.keys()
        seen.keys.append(keys)
        region.advertise(s, keys)
    region.close_advertising()
    for s, site in sites.items():
        shares = site.share(region.neighbours(s))
        seen.sealed += [(s, x) for x in shares]
        region.submit_shares(s, shares)
    region.close_sharing()
    for s, site in sites.items():
        site.accept_shares(region.shares_for(s))
    ring = RingSum(masked_manifest(model, p.ring_bits), p.ring_bits)
    for s, site in sites.items():
        if s not in BEFORE:
            seen.uploads[s] = site.mask(ups[s], model, weight=weights[s])
            fold_into(ring, seen.uploads[s])
    region.name_survivors(seen.uploads)
    assert region.survivors is not None
    for s in region.survivors:
        if s not in AFTER:
            reveals = sites[s].reveal(region.survivors, region.dropped)
            seen.reveals += [(s, r) for r in reveals]
            region.submit_reveals(s, reveals)
    return Round(ups, weights, sites, region, ring, seen)


def quantized(r: Round, site: str) -> np.ndarray:
    """The site's update as it would be uploaded unmasked (up to its rounding)."""
    scale = r.weights[site] * 2.0**PRECISION / CLIP
    return np.round(r.ups[site]["w"].astype(np.float64) * scale).astype(np.int64)


def close_elements(masked: np.ndarray, plain: np.ndarray) -> int:
    """Elements within one step of the plain quantized value, modulo the ring."""
    diff = masked.astype(np.uint64) - plain.astype(np.uint64)  # wraps: mod 2^64
    return int(np.count_nonzero((diff <= 1) | (diff == np.uint64(2**64 - 1))))


def correlation(masked: np.ndarray, plain: np.ndarray) -> float:
    return float(np.corrcoef(masked.view(np.int64).astype(np.float64), plain)[0, 1])


def test_the_test_detects_an_unmasked_update(played: Round) -> None:
    """The checks below would catch a payload that is the quantized update itself."""
    plain = quantized(played, "s00")
    assert close_elements(plain.view(np.uint64), plain) == D
    assert correlation(plain.view(np.uint64), plain.astype(np.float64)) > 0.999


def test_no_masked_upload_shows_its_update(played: Round) -> None:
    for site, upload in played.seen.uploads.items():
        masked = np.frombuffer(upload.payload, dtype=np.uint64)[:D]
        plain = quantized(played, site)
        assert not np.array_equal(masked, plain.view(np.uint64))
        assert close_elements(masked, plain) == 0
        assert abs(correlation(masked, plain.astype(np.float64))) < 0.1
        # the masked values spread over the whole ring, the update's over a tiny part
        assert np.median(np.abs(masked.view(np.int64).astype(np.float64))) > 2**60
        assert np.abs(plain).max() < 2**30


def test_without_its_self_mask_an_upload_is_still_masked(played: Round) -> None:
    """The aggregator rebuilds each survivor's seed b; its pairwise masks still hide it."""
    unmasking = played.region.unmasking()
    survivors = unmasking.survivors
    seeds = dict(zip(survivors, (seed for seed, _ in unmasking.corrections), strict=False))
    stream = MaskStream(RING_DTYPES[64])
    for site in survivors:
        values = np.frombuffer(played.seen.uploads[site].payload, dtype=np.uint64).copy()
        add_mask(values, stream, seeds[site], start=0, sign=-1)
        plain = quantized(played, site)
        assert close_elements(values[:D], plain) == 0
        assert abs(correlation(values[:D], plain.astype(np.float64))) < 0.1


def test_the_sum_is_all_that_is_learnt(played: Round) -> None:
    """... and the sum itself comes out (so the masks above are what hide each update)."""
    ring = RingSum(played.ring.manifest, 64)
    ring.values[:] = played.ring.values
    ring.unmask(played.region.unmasking().corrections)
    survivors = [s for s in played.ups if s not in BEFORE]
    got = decode_sum(ring.tensor(0), bits=64, step=CLIP * 2.0**-PRECISION)
    want = sum(played.weights[s] * played.ups[s]["w"].astype(np.float64) for s in survivors)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-5


def test_for_no_site_both_its_seed_and_its_key_are_revealed(played: Round) -> None:
    kinds: dict[str, set[bool]] = {}
    count: dict[tuple[str, bool], int] = {}
    for _, r in played.seen.reveals:
        kinds.setdefault(r.owner, set()).add(r.mask_key)
        count[r.owner, r.mask_key] = count.get((r.owner, r.mask_key), 0) + 1
    assert all(len(k) == 1 for k in kinds.values())  # one kind of share per owner
    survivors, dropped = set(played.region.survivors or ()), set(played.region.dropped)
    assert dropped == BEFORE and survivors.isdisjoint(dropped)
    assert {o for o, k in kinds.items() if k == {False}} <= survivors  # seeds of survivors
    assert {o for o, k in kinds.items() if k == {True}} <= dropped  # keys of dropped sites
    t = played.region.params.threshold
    for owner in played.ups:  # rebuildable: at least t shares of one kind, never of both
        rebuildable = [kind for kind in (False, True) if count.get((owner, kind), 0) >= t]
        assert len(rebuildable) <= 1
    assert dropped.isdisjoint(played.seen.uploads)  # keys known only where no upload came
    # what the region itself holds, the same
    assert set(played.region._seed_shares).isdisjoint(played.region._key_shares)


def test_no_raw_secret_or_plaintext_travels(played: Round) -> None:
    blob = played.seen.blob()
    survivors = set(played.region.survivors or ())
    secrets: list[bytes] = []
    for owner, site in played.sites.items():
        secrets += [site._seed, kx.private_bytes(site._mask), kx.private_bytes(site._cipher)]
        own = site._own
        assert own is not None
        # the share of a secret that must stay hidden: survivors' keys, dropped sites' seeds
        secrets.append(own[1] if owner in survivors else own[0])
        for held_owner, (b, s) in site._held.items():
            secrets.append(s if held_owner in survivors else b)
        update = played.ups[owner]["w"].tobytes()
        secrets += [update[:64], update[8000:8064], played.ups[owner]["b"].tobytes()]
    assert len(secrets) > 100
    for secret in secrets:
        assert secret not in blob
    # the sealed shares are ciphertext: no share the sites hold appears in them
    sealed = b"|".join(s.ciphertext for _, s in played.seen.sealed)
    for site in played.sites.values():
        for b, s in site._held.values():
            assert b not in sealed and s not in sealed
