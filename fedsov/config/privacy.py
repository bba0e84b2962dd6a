"""``[privacy]``: the DP-SGD settings a data owner chooses for its site."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fedsov.config.base import Bool, Number, Section, Str, one_of, section

__all__ = ["SITE_ACCOUNTANTS", "PrivacyConfig"]

SITE_ACCOUNTANTS = ("pld",)
"""Replace-one accountants (a site publishes its example count); as fedsov.privacy.accountant."""


@section
class PrivacyConfig(Section):
    """DP-SGD settings; ``enabled=False`` trains without noise or clipping (epsilon is inf)."""

    SECTION = "privacy"
    noise_multiplier: Annotated[Number, Field(ge=0.0)] = 1.0
    max_grad_norm: Annotated[Number, Field(gt=0.0)] = 1.0
    delta: Annotated[Number, Field(gt=0.0, lt=1.0)] = 1e-5
    accountant: Annotated[Str, one_of(*SITE_ACCOUNTANTS)] = "pld"
    enabled: Bool = True
    # Federated evaluation ([training] evaluate): σ of the Gaussian mechanism on the
    # site's metrics (fedsov.privacy.evaluation), and fedsov's trainer's per-record loss
    # clip (accuracy is in [0, 1]). A Flower app's: [trainer] eval_metrics.
    eval_noise_multiplier: Annotated[Number, Field(gt=0.0)] = 5.0
    eval_loss_clip: Annotated[Number, Field(gt=0.0)] = 10.0
