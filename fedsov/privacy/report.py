"""Privacy spent, from sites' ledgers: per site, per jurisdiction, per federation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsov.privacy.accountant import compute_epsilon
from fedsov.privacy.ledger import PrivacyLedger

__all__ = ["privacy_report"]


def privacy_report(ledgers: Sequence[Path]) -> dict[str, Any]:
    """ε of every (federation, site) in the ledgers, and the worst per jurisdiction/federation.

    Each site's ε composes all of its releases in that federation, at the δ and with
    the accountant the site used (the largest δ if they changed).
    """
    sites: list[dict[str, Any]] = []
    for path in ledgers:
        ledger = PrivacyLedger(path)
        keys = sorted({(e.federation, e.site, e.jurisdiction) for e in ledger.entries})
        for federation, site, jurisdiction in keys:
            entries = [
                e
                for e in ledger.entries
                if (e.federation, e.site, e.jurisdiction) == (federation, site, jurisdiction)
            ]
            delta = max(e.delta for e in entries)
            accountant = entries[-1].accountant
            sites.append(
                {
                    "federation": federation,
                    "site": site,
                    "jurisdiction": jurisdiction,
                    "rounds": len(entries),
                    "steps": sum(e.steps for e in entries),
                    "epsilon": compute_epsilon(
                        history=[e.step for e in entries], delta=delta, accountant=accountant
                    ),
                    "delta": delta,
                    "accountant": accountant,
                    "ledger": str(path),
                }
            )

    def worst(key: str) -> dict[str, dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        for s in sites:
            group = groups.setdefault(s[key], {"sites": 0, "max_epsilon": 0.0})
            group["sites"] += 1
            group["max_epsilon"] = max(group["max_epsilon"], s["epsilon"])
        return dict(sorted(groups.items()))

    return {
        "sites": sites,
        "jurisdictions": worst("jurisdiction"),
        "federations": worst("federation"),
    }
