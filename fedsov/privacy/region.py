"""A region's site-level budget: each export of DP-FedAvg charged before it leaves.

Each round asks m of the n sites connected when it opened (a uniform sample drawn
with the OS CSPRNG; m = n without sites_per_round) and divides the sum by the
published count, so it is accounted as replace-one fixed-size sampling (the Gaussian
mechanism at multiplier z/2: swapping one site moves the clipped sum by up to 2C).
With adaptive clipping the clipped count's release is inside z (Theorem 1 of Andrew
et al. 2021). The releases are persisted: ε composes across restarts.
"""

from __future__ import annotations

from fedsov.messages import PrivacyReport
from fedsov.privacy.site_level import SiteLevelLedger, SiteRound

__all__ = ["RegionBudget", "site_level_report"]


class RegionBudget:
    """The region's ledger of site-level releases, and the ε it may reach (None: no cap)."""

    def __init__(self, ledger: SiteLevelLedger, *, budget: float | None) -> None:
        self.ledger = ledger
        self.budget = budget

    def epsilon(self, delta: float) -> float:
        """Site-level ε of every release so far."""
        return self.ledger.fixed_size_epsilon(delta)

    def charge(
        self,
        *,
        round: int,
        base_sha256: str,
        noise_multiplier: float,
        selected: int,
        population: int,
        delta: float,
    ) -> str | None:
        """Record round ``round``'s release (m = ``selected`` of n = ``population`` sites)
        on disk before it leaves, or say why it may not leave. A round released before
        (same round over the same base) costs nothing again."""
        if self.ledger.has_round(round, base_sha256):
            return None
        release = SiteRound(noise_multiplier, selected, population)
        after = self.ledger.fixed_size_epsilon(delta, extra=[release])
        if self.budget is not None and after > self.budget:
            return (
                f"exporting round {round} would take the site-level ε of "
                f"{self.ledger.region} to {after:.3f} > its budget {self.budget:g} "
                f"(δ={delta:g}); nothing more leaves"
            )
        self.ledger.record(
            noise_multiplier=noise_multiplier,
            sites=selected,
            population=population,
            round=round,
            base_sha256=base_sha256,
            delta=delta,
        )
        return None


def site_level_report(
    epsilon: float, *, delta: float, noise_multiplier: float, clip: float, rounds: int
) -> PrivacyReport:
    """What a region's export says of its site-level DP (one release per round)."""
    return PrivacyReport(
        enabled=True,
        epsilon=epsilon,
        delta=delta,
        noise_multiplier=noise_multiplier,
        max_grad_norm=clip,
        sample_rate=1.0,
        steps=1,
        total_steps=rounds,
        accountant="rdp-replace-one",
    )
