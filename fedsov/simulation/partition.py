"""Split example indices across sites: IID or Dirichlet label skew (NIID-Bench / Flower)."""

from __future__ import annotations

import numpy as np

from fedsov.exceptions import ConfigError

__all__ = ["SCHEMES", "dirichlet_partition", "iid_partition", "partition"]

SCHEMES = ("iid", "dirichlet")


def _check(labels: np.ndarray, num_sites: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ConfigError(f"partition: labels must be one-dimensional, got shape {y.shape}")
    if num_sites < 1:
        raise ConfigError(f"partition: num_sites must be at least 1, got {num_sites}")
    if len(y) < num_sites:
        raise ConfigError(f"partition: {len(y)} examples cannot fill {num_sites} sites")
    return y


def iid_partition(labels: np.ndarray, *, num_sites: int, seed: int) -> list[np.ndarray]:
    """Shuffle all indices and cut them into ``num_sites`` near-equal parts (each sorted)."""
    y = _check(labels, num_sites)
    perm = np.random.default_rng(seed).permutation(len(y))
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, num_sites)]


def dirichlet_partition(
    labels: np.ndarray,
    *,
    num_sites: int,
    alpha: float,
    seed: int,
    min_size: int = 10,
    max_tries: int = 1000,
    top_up: bool = False,
) -> list[np.ndarray]:
    """Label-skewed split: per class, p ~ Dir(alpha) over sites; redraw until each has min_size.

    As in NIID-Bench, a site already holding more than ``n / num_sites`` examples gets no
    share of later classes. Raises ConfigError when no draw within ``max_tries`` works.

    With ``top_up``, one draw is made and each site left below ``min_size`` is given
    examples drawn at random from the largest sites instead: with many sites (1,000 at
    alpha 0.5) almost no draw gives every site ``min_size``, so redrawing would not end.
    """
    y = _check(labels, num_sites)
    if not alpha > 0:
        raise ConfigError(f"partition: dirichlet alpha must be > 0, got {alpha}")
    if min_size < 0 or max_tries < 1:
        raise ConfigError("partition: min_size must be >= 0 and max_tries >= 1")
    n = len(y)
    if n < num_sites * min_size:
        raise ConfigError(
            f"partition: {n} examples cannot give {num_sites} sites {min_size} examples each"
        )
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(1 if top_up else max_tries):
        sites = _draw(y, classes, num_sites, alpha, rng)
        if top_up:
            _top_up(sites, min_size, rng)
        if min(len(s) for s in sites) >= min_size:
            return [np.sort(s).astype(np.int64) for s in sites]
    raise ConfigError(
        f"partition: no Dirichlet(alpha={alpha}) split over {num_sites} sites gave every site "
        f"{min_size} examples in {max_tries} tries; raise alpha or lower min_size"
    )


def _draw(
    y: np.ndarray, classes: np.ndarray, num_sites: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """One Dirichlet draw: each site's example indices (NIID-Bench's cap included)."""
    n = len(y)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_sites)]
    sizes = np.zeros(num_sites, dtype=np.int64)
    for c in classes:
        idx = rng.permutation(np.flatnonzero(y == c))
        p = rng.dirichlet(np.full(num_sites, alpha))
        p = p * (sizes < n / num_sites)
        total = p.sum()
        p = p / total if total > 0 else np.full(num_sites, 1.0 / num_sites)
        cuts = (np.cumsum(p) * len(idx)).astype(np.int64)[:-1]
        for site, part in enumerate(np.split(idx, cuts)):
            parts[site].append(part)
            sizes[site] += len(part)
    return [np.concatenate(p) for p in parts]


def _top_up(sites: list[np.ndarray], min_size: int, rng: np.random.Generator) -> None:
    """Move random examples from the largest sites to each site below ``min_size``, in
    site order (the caller checked n >= sites x min_size, so the largest site always
    has more than ``min_size`` while another has fewer)."""
    sizes = np.array([len(s) for s in sites], dtype=np.int64)
    for site in np.flatnonzero(sizes < min_size):
        while sizes[site] < min_size:
            donor = int(np.argmax(sizes))
            give = int(min(min_size - sizes[site], sizes[donor] - min_size))
            taken = rng.choice(len(sites[donor]), size=give, replace=False)
            keep = np.ones(len(sites[donor]), dtype=bool)
            keep[taken] = False
            sites[site] = np.concatenate([sites[site], sites[donor][taken]])
            sites[donor] = sites[donor][keep]
            sizes[site] += give
            sizes[donor] -= give


def partition(
    labels: np.ndarray,
    *,
    scheme: str,
    num_sites: int,
    seed: int,
    alpha: float | None = None,
    min_size: int = 10,
    top_up: bool = False,
) -> list[np.ndarray]:
    """Dispatch to ``iid_partition`` or ``dirichlet_partition`` (which needs ``alpha``;
    ``min_size`` and ``top_up`` are its)."""
    if scheme == "iid":
        return iid_partition(labels, num_sites=num_sites, seed=seed)
    if scheme == "dirichlet":
        if alpha is None:
            raise ConfigError("partition: scheme 'dirichlet' needs alpha")
        return dirichlet_partition(
            labels, num_sites=num_sites, alpha=alpha, seed=seed, min_size=min_size, top_up=top_up
        )
    raise ConfigError(f"partition: unknown scheme {scheme!r} (known: {', '.join(SCHEMES)})")
