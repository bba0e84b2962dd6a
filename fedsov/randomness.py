"""Secret randomness for every draw a DP guarantee rests on.

Poisson masks, DP-SGD noise, DP-FedAvg noise and clipping bits, and site selection under
site-level DP are seeded from the OS CSPRNG (:mod:`secrets`) every time: nothing a peer,
a plan or a config file says can fix them, so an upstream cannot replay training.

Tests and benchmarks that must repeat a run bit for bit set the environment variable
``FEDSOV_INSECURE_REPRODUCIBLE=1`` on the processes concerned (never read from a plan, a
config or the network). Then seeds are derived from the given public values, every start
warns loudly, and the audit ledger records it; the compliance report flags such nodes.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
from collections.abc import Sequence

import numpy as np

from fedsov.exceptions import ConfigError

__all__ = [
    "REPRODUCIBLE_ENV",
    "reproducible",
    "secret_random",
    "secret_seed",
    "warn_if_reproducible",
]

REPRODUCIBLE_ENV = "FEDSOV_INSECURE_REPRODUCIBLE"
"""Set to ``1`` to derive DP randomness from public seeds: for tests only, never in use."""

_MASK = (1 << 64) - 1
log = logging.getLogger("fedsov.randomness")


def reproducible() -> bool:
    """Whether this process runs in the insecure reproducible mode."""
    value = os.environ.get(REPRODUCIBLE_ENV, "")
    if value not in ("", "0", "1"):
        raise ConfigError(f"environment: {REPRODUCIBLE_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def warn_if_reproducible(node: str) -> bool:
    """Warn (loudly) that DP randomness is predictable; returns whether it is."""
    if not reproducible():
        return False
    log.warning(
        "!!! %s: %s=1: DP randomness is derived from public seeds, so the privacy "
        "guarantee does NOT hold. For tests and benchmarks only; recorded in the audit "
        "ledger. !!!",
        node,
        REPRODUCIBLE_ENV,
    )
    return True


def secret_seed(public: Sequence[int], *, bits: int = 63) -> int:
    """A fresh ``bits``-bit seed from the OS CSPRNG; derived from ``public`` only in the
    insecure reproducible mode."""
    if not reproducible():
        return secrets.randbits(bits)
    state = np.random.SeedSequence([int(v) & _MASK for v in public])
    words = -(-bits // 64)
    value = 0
    for word in state.generate_state(words, dtype=np.uint64):  # the first one leads
        value = (value << 64) | int(word)
    return value >> (64 * words - bits)


def secret_random(public: Sequence[int]) -> random.Random:
    """A ``random.Random`` drawing from the OS CSPRNG (seeded from ``public`` only in the
    insecure reproducible mode)."""
    if not reproducible():
        return random.SystemRandom()
    return random.Random(secret_seed(public))
