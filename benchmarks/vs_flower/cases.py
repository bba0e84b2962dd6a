"""The benchmark's cases: how many sites, how large a model, how long a run may take."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CASES", "QUICK", "Case", "shapes_for"]


@dataclass(frozen=True)
class Case:
    name: str
    label: str  # the table's row
    sites: int
    params: int
    timeout_s: float  # for one run of one system, start-up included

    @property
    def model_mb(self) -> float:
        return self.params * 4 / 1e6


CASES = {
    c.name: c
    for c in (
        Case("10x1M", "round, 10 sites x 1M params", 10, 1_000_000, 400.0),
        Case("2x25M", "round, 2 sites x 25M params", 2, 25_000_000, 400.0),
        Case("1x100M", "400 MB model down + up, 1 site", 1, 100_000_000, 400.0),
        Case("50x1M", "round, 50 sites x 1M params", 50, 1_000_000, 900.0),
        Case("200x100k", "round, 200 sites x 100k params", 200, 100_000, 1200.0),
    )
}

QUICK = Case("quick", "round, 2 sites x 10k params (--quick)", 2, 10_000, 120.0)


def shapes_for(params: int, tensors: int = 4) -> list[list[int]]:
    """A few float32 tensors holding ``params`` values in all (the last takes the rest)."""
    count = min(tensors, params)
    size = params // count
    sizes = [size] * (count - 1) + [params - size * (count - 1)]
    return [[s // 1000, 1000] if s % 1000 == 0 else [s] for s in sizes]
