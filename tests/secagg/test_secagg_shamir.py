"""Shamir sharing of 32-byte secrets: any t of n rebuild, t - 1 do not, bad shares refused."""

from __future__ import annotations

import itertools
import random

import pytest

from fedsov.exceptions import ProtocolError
from fedsov.secagg.shamir import PRIME, SHARE_BYTES, combine, split

SECRET = bytes(range(1, 33))


def rebuild(shares: list[bytes], xs: tuple[int, ...]) -> bytes | None:
    """The secret from the shares at ``xs`` (1-based), None where it is no 32-byte one."""
    try:
        return combine({x: shares[x - 1] for x in xs})
    except ProtocolError:
        return None


@pytest.mark.parametrize(("t", "n"), [(1, 1), (1, 4), (2, 3), (3, 5), (5, 10), (10, 10)])
def test_any_t_of_n_shares_rebuild_the_secret(t: int, n: int) -> None:
    shares = split(SECRET, threshold=t, holders=n)
    assert len(shares) == n and all(len(s) == SHARE_BYTES for s in shares)
    for xs in itertools.combinations(range(1, n + 1), t):
        assert combine({x: shares[x - 1] for x in xs}) == SECRET
    if t < n:  # more than t rebuild it too
        assert combine(dict(enumerate(shares, start=1))) == SECRET


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5), (5, 10), (10, 10)])
def test_t_minus_one_shares_do_not(t: int, n: int) -> None:
    shares = split(SECRET, threshold=t, holders=n)
    for xs in itertools.combinations(range(1, n + 1), t - 1):
        assert rebuild(shares, xs) != SECRET


def test_secrets_at_the_edges_of_32_bytes() -> None:
    for secret in (bytes(32), b"\xff" * 32, b"\x00" * 31 + b"\x01"):
        shares = split(secret, threshold=3, holders=4)
        assert combine({2: shares[1], 3: shares[2], 4: shares[3]}) == secret


def test_splits_are_fresh_each_time() -> None:
    """The coefficients are random: two splits of one secret differ (but for x = 0)."""
    first = split(SECRET, threshold=3, holders=5)
    second = split(SECRET, threshold=3, holders=5)
    assert first != second
    assert combine({1: first[0], 2: first[1], 3: first[2]}) == SECRET
    assert combine({1: second[0], 2: second[1], 3: second[2]}) == SECRET


def test_one_altered_share_changes_the_secret() -> None:
    shares = split(SECRET, threshold=3, holders=5)
    bad = bytearray(shares[1])
    bad[-1] ^= 1
    assert rebuild([shares[0], bytes(bad), shares[2]], (1, 2, 3)) != SECRET


@pytest.mark.parametrize("size", [0, 1, SHARE_BYTES - 1, SHARE_BYTES + 1, 2 * SHARE_BYTES])
def test_shares_of_the_wrong_size_are_refused(size: int) -> None:
    shares = split(SECRET, threshold=2, holders=3)
    with pytest.raises(ProtocolError):
        combine({1: shares[0], 2: bytes(size)})


def test_shares_outside_the_field_or_at_bad_points_are_refused() -> None:
    shares = split(SECRET, threshold=2, holders=3)
    with pytest.raises(ProtocolError):  # y >= p
        combine({1: shares[0], 2: PRIME.to_bytes(SHARE_BYTES, "big")})
    with pytest.raises(ProtocolError):  # x = 0 is the secret's own point
        combine({0: shares[0], 2: shares[1]})
    with pytest.raises(ProtocolError):
        combine({-1: shares[0], 2: shares[1]})


def test_split_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError):
        split(SECRET[:31], threshold=2, holders=3)
    with pytest.raises(ValueError):
        split(SECRET, threshold=0, holders=3)
    with pytest.raises(ValueError):
        split(SECRET, threshold=4, holders=3)


def test_random_secrets_round_trip() -> None:
    rng = random.Random(5)
    for _ in range(20):
        secret = rng.randbytes(32)
        n = rng.randint(2, 12)
        t = rng.randint(1, n)
        shares = split(secret, threshold=t, holders=n)
        xs = rng.sample(range(1, n + 1), t)
        assert combine({x: shares[x - 1] for x in xs}) == secret
