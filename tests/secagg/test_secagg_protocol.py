"""SecAgg+ end to end in process: sites and a region, with dropouts and hostile peers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from secagg_harness import (
    Updates,
    names,
    params,
    play,
    relative_l2,
    setup,
    updates,
    weighted_mean,
)

from fedsov.exceptions import ProtocolError, SecureAggregation
from fedsov.messages import RevealedShare, SealedShare, SecAggKeys
from fedsov.secagg import RegionRound, SiteRound
from fedsov.secagg.region import SEALED_BYTES
from fedsov.secagg.shamir import SHARE_BYTES

N = 10


@pytest.fixture(scope="module")
def ups() -> Updates:
    return updates(N, seed=7)


def weights_of(ups: Updates) -> dict[str, int]:
    return {s: 10 + 7 * i for i, s in enumerate(ups)}


def check_mean(played: object, ups: Updates, weights: dict[str, int], among: list[str]) -> None:
    total = sum(weights[s] for s in among)
    got = np.concatenate([played.decoded(i) / total for i in (0, 1)])  # type: ignore[attr-defined]
    want = np.concatenate([weighted_mean(ups, weights, among, name) for name in ("w", "b")])
    assert relative_l2(got, want) <= 1e-5  # the quantization error (~1e-6 here)
    # the within-clip tail counts every survivor (all norms are far below the clip)
    assert played.decoded(2, step=1.0).tolist() == [float(len(among))]  # type: ignore[attr-defined]


def test_defaults_for_ten_sites() -> None:
    p = params(N)
    assert (p.neighbours, p.threshold, p.ring_bits) == (9, 5, 64)
    assert params(N, max_weight=12).ring_bits == 32  # 10·(12·2^24 + 1) < 2^31
    assert params(N, weighted=False).ring_bits == 32
    assert params(N, max_weight=10_000_000).ring_bits == 64


@pytest.mark.parametrize("max_weight", [12, 10_000_000])  # a 32- and a 64-bit ring
def test_no_dropouts_gives_the_weighted_mean(ups: Updates, max_weight: int) -> None:
    p = params(N, max_weight=max_weight)
    assert p.ring_bits == (32 if max_weight == 12 else 64)
    weights = {s: 12 - i % 3 for i, s in enumerate(ups)}  # at most max_weight
    played = play(ups, p, weights)
    assert played.unmasking is not None
    assert played.unmasking.survivors == tuple(names(N)) and played.unmasking.dropped == ()
    check_mean(played, ups, weights, names(N))


def test_dropouts_after_sharing_and_after_uploading(ups: Updates) -> None:
    p = params(N)
    assert p.threshold == 5
    weights = weights_of(ups)
    before, after = {"s00", "s04"}, {"s01", "s05", "s09"}
    played = play(ups, p, weights, drop_before_upload=before, drop_after_upload=after)
    survivors = [s for s in names(N) if s not in before]
    assert played.region.survivors == tuple(survivors)
    assert played.region.dropped == tuple(sorted(before))
    assert played.region.recoverable()
    check_mean(played, ups, weights, survivors)  # the late revealers' updates still count


def test_sparse_graph_with_dropouts() -> None:
    """30 sites, k = 8 (not complete): pairwise masks of dropped neighbours removed."""
    ups = updates(30, d=500, seed=3)
    p = params(30, neighbours=8)
    assert p.threshold == 5
    weights = {s: 5 + i for i, s in enumerate(ups)}
    before, after = {"s03", "s17"}, {"s11"}
    played = play(ups, p, weights, drop_before_upload=before, drop_after_upload=after)
    assert all(len(v) == 8 for v in played.region.graph.values())
    assert all(len(site.sharers) == 8 for site in played.sites.values())
    check_mean(played, ups, weights, [s for s in ups if s not in before])


def test_odd_neighbours_round_up_to_an_even_graph() -> None:
    """An odd k makes a (k + 1)-regular graph (graph.py): the sites accept it."""
    ups = updates(20, d=300, seed=4)
    p = params(20, neighbours=5)
    weights = dict.fromkeys(ups, 40)
    played = play(ups, p, weights, drop_before_upload={"s02"})
    assert all(len(v) == 6 for v in played.region.graph.values())
    check_mean(played, ups, weights, [s for s in ups if s != "s02"])


def test_fewer_survivors_than_the_threshold_fail_the_round(ups: Updates) -> None:
    p = params(N)
    played = setup(ups, p)
    with pytest.raises(SecureAggregation) as err:
        played.region.name_survivors(names(N)[: p.threshold - 1])
    assert err.value.code == "secagg-too-few-survivors"


def test_too_few_reveals_make_the_round_unrecoverable(ups: Updates) -> None:
    p = params(N)
    weights = weights_of(ups)
    quiet = set(names(N)[p.threshold - 1 :])  # only t - 1 survivors reveal
    played = play(ups, p, weights, drop_after_upload=quiet, unmask=False)
    assert len(played.reveals) == p.threshold - 1
    assert not played.region.recoverable()
    with pytest.raises(SecureAggregation) as err:
        played.region.unmasking()
    assert err.value.code == "secagg-unrecoverable"


def test_too_few_key_shares_of_a_dropped_site_are_unrecoverable() -> None:
    """Survivors reveal enough seed shares, but a dropped site's key lacks shares."""
    p = params(30, neighbours=8)
    ups30 = updates(30, d=100, seed=5)
    weights = dict.fromkeys(ups30, 1)
    gone = "s07"

    def drop_key_shares(site: str, reveals: tuple[RevealedShare, ...]) -> list[RevealedShare]:
        return [r for r in reveals if not r.mask_key]

    played = play(
        ups30, p, weights, drop_before_upload={gone}, tamper=drop_key_shares, unmask=False
    )
    assert not played.region.recoverable()
    with pytest.raises(SecureAggregation) as err:
        played.region.unmasking()
    assert err.value.code == "secagg-unrecoverable"


def corrupt(value: bytes) -> bytes:
    """Another field element of the same size (a hostile share)."""
    return (int.from_bytes(value, "big") ^ (1 << 100)).to_bytes(SHARE_BYTES, "big")


@pytest.mark.parametrize("hostile", ["s00", "s05", "s09"])  # the first holder, too
def test_a_corrupted_share_is_outvoted_by_the_commitment(ups: Updates, hostile: str) -> None:
    """One survivor lies about every share it reveals; more than t shares are in, and the
    commitments (seed) and public keys (mask key) pick subsets that rebuild."""
    p = params(N)
    weights = weights_of(ups)

    def lie(site: str, reveals: tuple[RevealedShare, ...]) -> list[RevealedShare]:
        if site != hostile:
            return list(reveals)
        return [dataclasses.replace(r, value=corrupt(r.value)) for r in reveals]

    gone = {"s03"} if hostile != "s03" else {"s04"}
    played = play(ups, p, weights, drop_before_upload=gone, tamper=lie)
    check_mean(played, ups, weights, [s for s in names(N) if s not in gone])


def test_bad_shares_with_no_good_subset_fail_by_name(ups: Updates) -> None:
    """Exactly t shares in, one of them bad: nothing rebuilds what was committed to."""
    p = params(N)
    weights = weights_of(ups)
    revealers = names(N)[: p.threshold]

    def lie(site: str, reveals: tuple[RevealedShare, ...]) -> list[RevealedShare]:
        if site != revealers[0]:
            return list(reveals)
        return [dataclasses.replace(r, value=corrupt(r.value)) for r in reveals]

    played = play(
        ups, p, weights, drop_after_upload=set(names(N)) - set(revealers), tamper=lie, unmask=False
    )
    assert played.region.recoverable()  # enough shares, but one is bad
    with pytest.raises(SecureAggregation) as err:
        played.region.unmasking()
    assert err.value.code == "secagg-bad-share"


# ----- hostile messages to the region -------------------------------------------------


def fresh(n: int = N, **kw: int) -> tuple[dict[str, SiteRound], RegionRound]:
    p = params(n, **kw)
    sites = {s: SiteRound(s, p, round=3) for s in names(n)}
    return sites, RegionRound(p, 3, frozenset(sites))


def test_keys_of_the_wrong_size_are_refused() -> None:
    sites, region = fresh()
    good = sites["s00"].keys()
    for bad in (
        dataclasses.replace(good, cipher_key=good.cipher_key[:31]),
        dataclasses.replace(good, mask_key=good.mask_key + b"\0"),
        dataclasses.replace(good, commitment=b""),
    ):
        with pytest.raises(ProtocolError):
            region.advertise("s00", bad)
    assert region.keys == {}
    with pytest.raises(ProtocolError):  # keys in another site's name
        region.advertise("s00", sites["s01"].keys())
    with pytest.raises(ProtocolError):  # a site without a task in the round
        region.advertise("intruder", dataclasses.replace(good, name="intruder"))
    region.advertise("s00", good)
    region.advertise("s00", good)  # the same keys again: a retry
    with pytest.raises(ProtocolError):  # other keys later
        region.advertise("s00", SiteRound("s00", region.params, round=3).keys())


def test_shares_for_non_neighbours_are_refused() -> None:
    sites, region = fresh(30, neighbours=8)
    for s, site in sites.items():
        region.advertise(s, site.keys())
    region.close_advertising()
    site = "s00"
    shares = sites[site].share(region.neighbours(site))
    stranger = next(s for s in sites if s != site and s not in region.graph[site])
    misrouted = (*shares[:-1], SealedShare(stranger, shares[-1].ciphertext))
    with pytest.raises(ProtocolError):
        region.submit_shares(site, misrouted)
    with pytest.raises(ProtocolError):  # one neighbour short
        region.submit_shares(site, shares[:-1])
    with pytest.raises(ProtocolError):  # a ciphertext of the wrong size
        region.submit_shares(
            site, (*shares[:-1], SealedShare(shares[-1].peer, shares[-1].ciphertext[:-1]))
        )
    assert len(shares[0].ciphertext) == SEALED_BYTES
    assert site not in region.sharers and region.inbox == {}
    region.submit_shares(site, shares)
    assert site in region.sharers


def test_a_site_refuses_a_neighbour_list_it_cannot_use() -> None:
    sites, region = fresh()
    for s, site in sites.items():
        region.advertise(s, site.keys())
    region.close_advertising()
    mine = region.neighbours("s00")
    with pytest.raises(ProtocolError):  # itself among its neighbours
        sites["s00"].share((*mine[:-1], sites["s00"].keys()))
    with pytest.raises(ProtocolError):  # a neighbour twice
        sites["s00"].share((*mine[:-1], mine[0]))
    with pytest.raises(SecureAggregation) as err:  # too few to reach the threshold
        sites["s00"].share(mine[: region.params.threshold - 2])
    assert err.value.code == "secagg-bad-graph"


def test_reveals_by_non_survivors_or_of_the_wrong_kind_are_refused(ups: Updates) -> None:
    p = params(N)
    weights = weights_of(ups)
    gone = "s02"
    played = play(ups, p, weights, drop_before_upload={gone}, unmask=False)
    region = played.region
    alive = "s05"
    held = played.sites[alive]

    # a dropped site (it shared, it uploaded nothing) may not reveal
    fake = (RevealedShare(gone, False, bytes(SHARE_BYTES)),)
    with pytest.raises(ProtocolError):
        region.submit_reveals(gone, fake)
    with pytest.raises(ProtocolError):  # nor may a site outside the round
        region.submit_reveals("intruder", fake)

    # a fresh region at the reveal stage, to try a survivor's hostile reveals
    region2 = dataclasses.replace(region, _seed_shares={}, _key_shares={}, _revealed=set())
    own = held._own
    assert own is not None
    b_share, key_share = held._held["s07"]
    _, gone_key = held._held[gone]
    for bad in (
        [RevealedShare("s07", True, key_share)],  # the mask key of a survivor
        [RevealedShare(gone, False, held._held[gone][0])],  # the seed of a dropped site
        [RevealedShare(alive, True, own[1])],  # its own mask key
        [RevealedShare("s07", False, b_share)] * 2,  # one owner twice
        [RevealedShare("s07", False, b_share[:-1])],  # a share of the wrong size
        [RevealedShare("nobody", False, b_share)],  # an owner it holds nothing of
    ):
        with pytest.raises(ProtocolError):
            region2.submit_reveals(alive, bad)
    assert region2._seed_shares == {} and region2._key_shares == {}
    region2.submit_reveals(alive, [RevealedShare(gone, True, gone_key)])
    assert region2._key_shares == {gone: {alive: gone_key}}


def test_a_site_reveals_one_kind_per_owner_once() -> None:
    ups = updates(N, d=50, seed=1)
    played = setup(ups, params(N))
    survivors = tuple(s for s in names(N) if s != "s03")
    dropped = ("s03",)
    site = played.sites["s06"]
    with pytest.raises(ProtocolError):  # s06 listed as dropped and surviving
        site.reveal(survivors, ("s03", "s06"))
    with pytest.raises(ProtocolError):  # s06 not among the survivors
        site.reveal(tuple(s for s in survivors if s != "s06"), dropped)
    reveals = site.reveal(survivors, dropped)
    owners = [r.owner for r in reveals]
    assert len(owners) == len(set(owners)) == N  # itself and its 9 neighbours, once each
    kinds = {r.owner: r.mask_key for r in reveals}
    assert kinds == {s: s in dropped for s in names(N)}
    with pytest.raises(ProtocolError):  # a second reveal (survivors that move)
        site.reveal(names(N), ())


def test_a_site_reveals_nothing_below_the_threshold() -> None:
    ups = updates(N, d=50, seed=2)
    p = params(N)
    played = setup(ups, p)
    few = tuple(names(N)[: p.threshold - 1])
    with pytest.raises(SecureAggregation) as err:
        played.sites["s00"].reveal(few, tuple(names(N)[p.threshold - 1 :]))
    assert err.value.code == "secagg-too-few-survivors"
    # refused, not spent: with enough survivors it still reveals
    assert played.sites["s00"].reveal(names(N), ())


def test_altered_sealed_shares_are_refused() -> None:
    ups = updates(N, d=50, seed=3)
    p = params(N)
    sites = {s: SiteRound(s, p, round=3) for s in ups}
    region = RegionRound(p, 3, frozenset(sites))
    for s, site in sites.items():
        region.advertise(s, site.keys())
    region.close_advertising()
    for s, site in sites.items():
        region.submit_shares(s, site.share(region.neighbours(s)))
    region.close_sharing()
    mine = region.shares_for("s00")
    first = mine[0]
    flipped = bytearray(first.ciphertext)
    flipped[20] ^= 1
    for bad in (
        (SealedShare(first.peer, bytes(flipped)), *mine[1:]),  # altered
        (SealedShare(mine[1].peer, first.ciphertext), *mine[1:]),  # relabelled
        (*mine, SealedShare(first.peer, first.ciphertext)),  # repeated
        (SealedShare("s00", first.ciphertext), *mine[1:]),  # from itself
    ):
        with pytest.raises(ProtocolError):
            sites["s00"].accept_shares(bad)
    with pytest.raises(ProtocolError):  # sealed for another site
        sites["s01"].accept_shares(
            tuple(
                SealedShare(s.peer, region.inbox["s00"][s.peer]) if s.peer != "s00" else s
                for s in region.shares_for("s01")
            )
        )
    sites["s00"].accept_shares(mine)
    assert sites["s00"].sharers == sorted(s for s in names(N) if s != "s00")


def test_a_low_order_public_key_is_refused() -> None:
    """X25519 with the all-zero point has no shared secret: ProtocolError, not a crash."""
    sites, region = fresh()
    for s, site in sites.items():
        keys = site.keys()
        if s == "s01":
            keys = SecAggKeys(s, bytes(32), keys.mask_key, keys.commitment)
        region.advertise(s, keys)
    region.close_advertising()
    with pytest.raises(ProtocolError):
        sites["s00"].share(region.neighbours("s00"))


def test_stages_run_in_order() -> None:
    sites, region = fresh()
    with pytest.raises(SecureAggregation) as err:
        region.submit_shares("s00", ())
    assert err.value.code == "secagg-late"
    for s, site in list(sites.items())[:-1]:  # the last one misses the key stage
        region.advertise(s, site.keys())
    region.close_advertising()
    with pytest.raises(SecureAggregation) as err:
        region.advertise("s09", sites["s09"].keys())
    assert err.value.code == "secagg-late"
    with pytest.raises(SecureAggregation):
        region.neighbours("s09")
    assert "s09" not in region.graph and len(region.graph) == 9
    with pytest.raises(RuntimeError):
        RegionRound(region.params, 3, region.sites).unmasking()


def test_too_few_keys_fail_the_key_stage() -> None:
    sites, region = fresh()
    for s in names(N)[: region.params.threshold - 1]:
        region.advertise(s, sites[s].keys())
    with pytest.raises(SecureAggregation) as err:
        region.close_advertising()
    assert err.value.code == "secagg-too-few-sites"


def test_masked_upload_is_deterministic_in_shape() -> None:
    ups = updates(N, d=64, seed=9)
    p = params(N, weighted=False)
    played = setup(ups, p)
    encoded = played.sites["s00"].mask(ups["s00"], played.model, weight=3)
    assert encoded.manifest.nbytes == (64 + 10 + 1) * p.ring_bits // 8
    assert [t.dtype for t in encoded.manifest.tensors] == ["uint32"] * 3
    with pytest.raises(ValueError):
        played.sites["s00"].mask(ups["s00"], played.model, weight=0)
    assert np.frombuffer(encoded.payload, dtype=np.uint32).any()
