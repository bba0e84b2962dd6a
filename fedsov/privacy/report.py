"""Privacy spent, from the ledgers: per site, per region, per jurisdiction, per federation.

Two kinds of ledger are read, told apart by their records: a site's privacy ledger
(DP-SGD releases, per record, or update-level ones, per dataset: each row's ``unit``)
and a regional aggregator's site-level ledger (DP-FedAvg exports). A file holding
neither is refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsov.exceptions import DataError
from fedsov.fileio import read_records
from fedsov.privacy.accountant import NEIGHBOURS, SITE_ACCOUNTANTS, compute_epsilon
from fedsov.privacy.ledger import DATASET_UNIT, PRIVACY_UNIT, LedgerEntry, PrivacyLedger
from fedsov.privacy.site_level import SiteLevelLedger

__all__ = ["privacy_report"]

SITE_LEVEL_ACCOUNTANT = "rdp-replace-one"
SITE_ACCOUNTANT = SITE_ACCOUNTANTS[0]


def _is_site_level(path: Path) -> bool:
    try:
        records = read_records(path)
    except ValueError as exc:
        raise DataError(f"{path}: not a privacy ledger: {exc}") from exc
    return bool(records) and "population" in records[0]


def _unit(entries: Sequence[LedgerEntry]) -> str:
    """What the composed ε protects: a site's whole dataset if every release was
    update-level, else one record (a dataset-level ε bounds the record-level one)."""
    return DATASET_UNIT if all(e.unit == DATASET_UNIT for e in entries) else PRIVACY_UNIT


def _site_rows(path: Path) -> list[dict[str, Any]]:
    """One row per site and dataset: ε composes every release from that data, in any
    federation, with replace-one accounting (entries of an older fedsov without a
    fingerprint count against each of the site's datasets)."""
    ledger = PrivacyLedger(path)
    keys = sorted({(e.site, e.jurisdiction, e.dataset) for e in ledger.entries if e.dataset})
    if not keys:
        keys = sorted({(e.site, e.jurisdiction, "") for e in ledger.entries})
    rows = []
    for site, jurisdiction, dataset in keys:
        entries = [
            e
            for e in ledger.entries
            if (e.site, e.jurisdiction) == (site, jurisdiction) and e.about(dataset)
        ]
        delta = max(e.delta for e in entries)
        federations = sorted({e.federation for e in entries})
        rows.append(
            {
                "federation": entries[-1].federation,
                "federations": federations,
                "site": site,
                "jurisdiction": jurisdiction,
                "dataset": dataset,
                "rounds": len(entries),
                "unit": _unit(entries),
                "steps": sum(e.steps for e in entries),
                "epsilon": compute_epsilon(
                    history=[e.step for e in entries], delta=delta, accountant=SITE_ACCOUNTANT
                ),
                "delta": delta,
                "accountant": SITE_ACCOUNTANT,
                "neighbours": NEIGHBOURS[SITE_ACCOUNTANT],
                "ledger": str(path),
            }
        )
    return rows


def _region_row(path: Path) -> dict[str, Any]:
    ledger = SiteLevelLedger(path)
    first = ledger.records[0]
    deltas = [r.get("delta") for r in ledger.records]
    if any(not isinstance(d, float) for d in deltas):
        raise DataError(f"{path}: a site-level entry has no δ (written by an older fedsov)")
    delta = max(d for d in deltas if isinstance(d, float))
    return {
        "federation": first.get("federation", ""),
        "region": first.get("region", ""),
        "jurisdiction": first.get("jurisdiction", ""),
        "rounds": len(ledger.rounds),
        "epsilon": ledger.fixed_size_epsilon(delta),
        "delta": delta,
        "accountant": SITE_LEVEL_ACCOUNTANT,
        "ledger": str(path),
    }


def _worst(rows: Sequence[dict[str, Any]], key: str, count: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        group = groups.setdefault(row[key], {count: 0, "max_epsilon": 0.0})
        group[count] += 1
        group["max_epsilon"] = max(group["max_epsilon"], row["epsilon"])
    return dict(sorted(groups.items()))


def _silent_row(site: str, jurisdiction: str, federation: str) -> dict[str, Any]:
    """The row of an expected site that released nothing: (0, 0)-DP, no ledger."""
    return {
        "federation": federation,
        "federations": [federation] if federation else [],
        "site": site,
        "jurisdiction": jurisdiction,
        "dataset": "",
        "rounds": 0,
        "unit": PRIVACY_UNIT,
        "steps": 0,
        "epsilon": 0.0,
        "delta": 0.0,
        "accountant": SITE_ACCOUNTANT,
        "neighbours": NEIGHBOURS[SITE_ACCOUNTANT],
        "ledger": None,
    }


def privacy_report(
    ledgers: Sequence[Path],
    *,
    expected_sites: Mapping[str, str] | None = None,
    federation: str = "",
) -> dict[str, Any]:
    """ε of every site (its own ledger, ``unit`` record or dataset) and region
    (site-level) in the ledgers.

    Each site's ε composes all of its releases from the same data (in any federation),
    replace-one, at the largest δ it used. Each region's ε
    composes its exports as fixed-size, replace-one site-level releases. Per
    jurisdiction and federation the worst of each is given: regions of one
    jurisdiction hold disjoint sites, so a site's site-level ε is its own region's
    (parallel composition).

    ``expected_sites`` (site -> jurisdiction, e.g. a plan's edge sites, of
    ``federation``): each that no ledger shows a release of is listed too, after the
    others, with ε 0, δ 0, no rounds and ``ledger`` None. A site keeps no ledger until
    its first release, so one never asked to train has none (or an empty one).
    """
    sites: list[dict[str, Any]] = []
    regions: list[dict[str, Any]] = []
    for path in ledgers:
        if not path.is_file():
            raise DataError(f"{path}: no such ledger file")
        if _is_site_level(path):
            regions.append(_region_row(path))
        else:
            sites.extend(_site_rows(path))
    released = {row["site"] for row in sites}
    sites += [
        _silent_row(site, jurisdiction, federation)
        for site, jurisdiction in (expected_sites or {}).items()
        if site not in released
    ]

    def levels(key: str) -> dict[str, dict[str, Any]]:
        merged = _worst(sites, key, "sites")
        for name, group in _worst(regions, key, "regions").items():
            entry = merged.setdefault(name, {"sites": 0, "max_epsilon": 0.0})
            entry["regions"] = group["regions"]
            entry["max_site_level_epsilon"] = group["max_epsilon"]
        return dict(sorted(merged.items()))

    return {
        "sites": sites,
        "regions": regions,
        "jurisdictions": levels("jurisdiction"),
        "federations": levels("federation"),
    }
