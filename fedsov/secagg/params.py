"""A secure round's parameters for the sites it selected (what its tasks carry)."""

from __future__ import annotations

from fedsov.config import SecureAggregationSettings
from fedsov.messages import SecAggParams
from fedsov.secagg.graph import auto_neighbours
from fedsov.secagg.quantize import ring_bits

__all__ = ["default_threshold", "round_params"]


def default_threshold(neighbours: int) -> int:
    """t when the config leaves it 0: a strict majority of the k + 1 share holders, so no
    two disjoint groups of holders both rebuild a site's secrets."""
    return max(2, (neighbours + 1) // 2 + 1)


def round_params(
    config: SecureAggregationSettings,
    *,
    sites: int,
    clip: float,
    weighted: bool,
    max_weight: int,
) -> SecAggParams:
    """``config`` for a round of ``sites`` sites that clip to ``clip``; ``weighted``:
    each site multiplies its update by its example count (at most ``max_weight``)."""
    k = min(config.neighbours or auto_neighbours(sites), max(sites - 1, 1))
    t = config.threshold or default_threshold(k)
    k = max(k, min(t - 1, sites - 1))  # every secret needs t holders (itself + k)
    return SecAggParams(
        threshold=t,
        neighbours=k,
        ring_bits=ring_bits(
            sites=max(sites, 1),
            max_weight=max_weight if weighted else 1,
            precision_bits=config.precision_bits,
        ),
        precision_bits=config.precision_bits,
        clip=clip,
        weighted=weighted,
        stage_timeout_s=config.stage_timeout_s,
    )
