"""Shamir's secret sharing of 32-byte secrets over GF(2^521 - 1).

A secret s is the constant term of a random polynomial of degree t - 1; holder x gets
its value at x (x = 1, 2, ...). Any t shares give s back by Lagrange interpolation at
0; fewer say nothing about it. The coefficients come from the OS CSPRNG.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from fedsov.exceptions import ProtocolError

__all__ = ["PRIME", "SHARE_BYTES", "combine", "split"]

PRIME = 2**521 - 1  # a Mersenne prime above every 32-byte secret
SHARE_BYTES = 66  # a field element, big-endian
SECRET_BYTES = 32


def split(secret: bytes, *, threshold: int, holders: int) -> list[bytes]:
    """Shares of ``secret`` for holders x = 1..``holders``; any ``threshold`` rebuild it."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a shared secret has {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= holders:
        raise ValueError(f"threshold must be within 1..{holders}, got {threshold}")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in range(1, holders + 1):
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares.append(y.to_bytes(SHARE_BYTES, "big"))
    return shares


def combine(shares: Mapping[int, bytes]) -> bytes:
    """The secret behind ``shares`` (x -> share), all of which are used."""
    points = []
    for x, share in shares.items():
        if len(share) != SHARE_BYTES or not 1 <= x < PRIME:
            raise ProtocolError(f"a share is a field element of {SHARE_BYTES} bytes at x >= 1")
        y = int.from_bytes(share, "big")
        if y >= PRIME:
            raise ProtocolError("a share is not an element of the field")
        points.append((x, y))
    secret = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                numerator = numerator * xj % PRIME
                denominator = denominator * (xj - xi) % PRIME
        secret = (secret + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * SECRET_BYTES):
        raise ProtocolError("the shares do not rebuild a 32-byte secret (a bad share)")
    return secret.to_bytes(SECRET_BYTES, "big")
