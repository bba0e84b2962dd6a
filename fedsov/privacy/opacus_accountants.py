"""Opacus' accountants (``prv``, ``rdp``) and ``rdp-classic``, registered with Opacus.

Imported by :mod:`fedsov.privacy.accountant` only when one of them computes: Opacus
imports torch, which ``pld`` (the accountant sites use) does not need.
"""

from __future__ import annotations

import math

import numpy as np
from opacus.accountants import create_accountant as create_opacus_accountant
from opacus.accountants import register_accountant
from opacus.accountants.analysis.rdp import compute_rdp
from opacus.accountants.rdp import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

__all__ = [
    "TF_PRIVACY_ORDERS",
    "ClassicRDPAccountant",
    "create_opacus_accountant",
    "get_noise_multiplier",
]

TF_PRIVACY_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


class ClassicRDPAccountant(RDPAccountant):  # type: ignore[misc]
    """Opacus' RDP with the classic conversion ε = min over orders a of
    RDP(a) + log(1/δ)/(a-1), over TF-Privacy's orders (Opacus' default ones), to
    compare with older papers. Registered with Opacus as ``rdp-classic``."""

    def get_privacy_spent(
        self, *, delta: float, alphas: list[float] | None = None
    ) -> tuple[float, float]:
        if not self.history:
            return 0.0, 0.0
        orders = np.array(alphas or TF_PRIVACY_ORDERS)
        rdp = sum(
            compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=list(orders))
            for sigma, q, steps in self.history
        )
        eps = rdp + math.log(1 / delta) / (orders - 1)
        best = int(np.argmin(eps))
        return float(eps[best]), float(orders[best])

    @classmethod
    def mechanism(cls) -> str:
        return "rdp-classic"


register_accountant("rdp-classic", ClassicRDPAccountant, force=True)
