"""Who masks with whom: a random k-regular graph over a round's sites (SecAgg+).

A Harary graph on a secret random permutation: site π(i) neighbours π(i ± 1..k/2).
The permutation comes from the OS CSPRNG, so no site (nor anyone who knows the plan)
can steer which sites' secrets it holds. With k >= n - 1 the graph is complete.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence

__all__ = ["auto_neighbours", "random_graph"]


def auto_neighbours(sites: int) -> int:
    """k for ``sites`` sites: every other site up to 16, then ~4·log2(n), even."""
    if sites <= 17:
        return max(sites - 1, 0)
    k = math.ceil(4 * math.log2(sites))
    return min(sites - 1, k + k % 2)


def random_graph(sites: Sequence[str], k: int) -> dict[str, tuple[str, ...]]:
    """Each site's neighbours (sorted) in a random k-regular graph over ``sites``."""
    names = sorted(set(sites))
    n = len(names)
    if k >= n - 1:
        return {s: tuple(o for o in names if o != s) for s in names}
    half = (k + 1) // 2  # an odd k is rounded up: the graph is (k+1)-regular
    order = list(names)
    secrets.SystemRandom().shuffle(order)
    graph: dict[str, set[str]] = {s: set() for s in names}
    for i, site in enumerate(order):
        for d in range(1, half + 1):
            other = order[(i + d) % n]
            graph[site].add(other)
            graph[other].add(site)
    return {s: tuple(sorted(v)) for s, v in graph.items()}
