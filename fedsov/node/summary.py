"""The run summary written at the end of a federation (``summary.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedsov.node.engine import RoundReport

__all__ = ["build_summary"]

_PRIVACY_KEYS = (
    "dp",
    "level",
    "epsilon",
    "delta",
    "noise_multiplier",
    "sample_rate",
    "total_steps",
    "accountant",
)


def build_summary(
    *,
    federation: str,
    reports: Sequence[RoundReport],
    model_sha256: str,
    model_file: str,
    seconds: float,
    status: str,
) -> dict[str, Any]:
    """Per-site ε is the latest one each site reported (ε composes, so it is the total)."""
    completed = [r for r in reports if r.completed]
    sites: dict[str, dict[str, Any]] = {}
    for report in reports:
        for result in report.sites:
            entry = sites.setdefault(
                result.site,
                {
                    "epsilon": None,
                    "delta": None,
                    "examples": 0,
                    "rounds_contributed": 0,
                    "rounds_missed": 0,
                },
            )
            if result.status == "accepted" and report.completed:
                site_json = result.to_json()
                entry.update({k: site_json[k] for k in _PRIVACY_KEYS})
                entry["examples"] = result.num_examples
                entry["rounds_contributed"] += 1
            else:
                entry["rounds_missed"] += 1
    last_metrics = dict(completed[-1].metrics) if completed else {}
    epsilons = [e["epsilon"] for e in sites.values() if e["epsilon"] is not None]
    return {
        "federation": federation,
        "status": status,
        "rounds": len(completed),
        "attempts": len(reports),
        "final_accuracy": last_metrics.get("accuracy"),
        "final_metrics": last_metrics,
        "model_sha256": model_sha256,
        "model_file": model_file,
        "max_site_epsilon": max(epsilons) if epsilons else None,
        "seconds": round(seconds, 2),
        "sites": dict(sorted(sites.items())),
        "history": [
            {"round": r.round, "attempt": r.attempt, "completed": r.completed, **r.metrics}
            | ({"federated": dict(r.federated)} if r.federated else {})
            for r in reports
        ],
    }
