"""``[site_dp]``: DP-FedAvg at the regional tier, with (optionally adaptive) clipping."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fedsov.config.base import Bool, Int, KeyProblem, Number, Section, section

__all__ = ["SiteDPSettings", "adaptive_noise"]


@section
class SiteDPSettings(Section):
    """DP-FedAvg settings. ``delta`` is the δ ε is reported at (accounting only)."""

    SECTION = "site_dp"
    clip: Annotated[Number, Field(gt=0.0)]
    noise_multiplier: Annotated[Number, Field(ge=0.0)]
    adaptive: Bool = False
    target_quantile: Annotated[Number, Field(ge=0.0, le=1.0)] = 0.5
    clip_learning_rate: Annotated[Number, Field(ge=0.0)] = 0.2
    count_noise_multiplier: Annotated[Number, Field(ge=0.0)] | None = None
    expected_sites: Annotated[Int, Field(ge=1)] | None = None
    delta: Annotated[Number, Field(gt=0.0, lt=1.0)] = 1e-5

    def __post_init__(self) -> None:
        z, sigma_b = self.noise_multiplier, self.count_noise_multiplier
        if sigma_b is None or not self.adaptive:
            return
        if z > 0 and not 2 * sigma_b > z:
            raise KeyProblem(
                "count_noise_multiplier",
                f"must exceed noise_multiplier / 2 ({z / 2}) for the sum's share z_Δ to exist, "
                f"got {sigma_b}",
            )
        if z == 0 and sigma_b > 0:
            raise KeyProblem(
                "count_noise_multiplier",
                "needs noise_multiplier > 0 (without noise on the sum there is no DP to keep)",
            )

    def noise(self, sites: int) -> tuple[float, float]:
        """(multiplier of the sum's noise, σ_b of the count's) for a round of ``sites``."""
        if not self.adaptive:
            return self.noise_multiplier, 0.0
        z = self.noise_multiplier
        if self.count_noise_multiplier is not None:
            sigma_b = self.count_noise_multiplier
            if z == 0:
                return 0.0, 0.0
            return (z**-2 - (2 * sigma_b) ** -2) ** -0.5, sigma_b
        return adaptive_noise(z, self.expected_sites or sites)


def adaptive_noise(noise_multiplier: float, sites: int) -> tuple[float, float]:
    """(z_Δ for the sum, σ_b for the count) so that both together cost z.

    σ_b = max(sites / 20, z) (the paper's m/20, raised to z for few sites);
    z_Δ = (z^-2 - (2σ_b)^-2)^(-1/2). Without noise (z = 0) both are 0.
    """
    z = noise_multiplier
    if z == 0:
        return 0.0, 0.0
    sigma_b = max(sites / 20.0, z)
    return (z**-2 - (2 * sigma_b) ** -2) ** -0.5, sigma_b
