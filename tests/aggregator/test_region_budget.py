"""A region stops exporting before its site-level ε would cross its budget, across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_two_tier import accept_any_node_of, coordinator, pki, region_config, serve, site

from fedsov.aggregator.app import RegionalAggregator
from fedsov.exceptions import FedsovError
from fedsov.pki import NodePaths
from fedsov.privacy.site_level import SiteLevelLedger
from fedsov.strategy import SiteDPSettings

__all__ = ["pki"]  # the module-scoped fixture, shared with test_two_tier

# z = 1 over the region's 2 sites, replace-one: ε 10.73 after one export, 16.51 after two.
BUDGET = 12.0


def region(tmp_path: Path, pki: dict[str, NodePaths], port: int) -> RegionalAggregator:
    config = region_config(
        tmp_path,
        pki["agg-a"],
        name="agg-a",
        upstream_port=port,
        site_dp=SiteDPSettings(clip=1.0, noise_multiplier=1.0),
    )
    return RegionalAggregator(config, budget_epsilon=BUDGET)


async def federation(tmp_path: Path, pki: dict[str, NodePaths]) -> tuple[list[object], float]:
    engine = coordinator(tmp_path / "top", participants=1)
    engine.admit = accept_any_node_of("tiers")
    server = await serve(engine, pki)
    agg = region(tmp_path, pki, server.port)
    tasks: list[asyncio.Future[object]] = [asyncio.ensure_future(agg.run())]
    try:
        await asyncio.wait_for(agg.listening.wait(), 30)
        assert agg.port is not None
        tasks += [
            asyncio.ensure_future(site(tmp_path, pki, s, agg.port).run()) for s in ("s1", "s2")
        ]
        with pytest.raises(FedsovError, match="round 2 failed"):
            await asyncio.wait_for(engine.run(), 180)
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    finally:
        for t in tasks:
            t.cancel()
        await server.stop(0)
    epsilon = agg.site_level_epsilon()
    assert epsilon is not None
    return list(engine.reports), epsilon


def test_region_declines_the_export_that_would_cross_its_budget(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    reports, epsilon = asyncio.run(federation(tmp_path, pki))
    statuses = [(r.sites[0].status, r.sites[0].reason) for r in reports]  # type: ignore[attr-defined]
    assert statuses[0] == ("accepted", "")
    export = reports[0].sites[0]  # type: ignore[attr-defined]
    assert export.num_examples == 2  # its 2 sites, not their examples (DP-FedAvg)
    # no per-site value: the count, and a bound on its sites' training time (2 x the round's)
    assert dict(export.metrics).keys() == {"sites", "training_seconds"}
    assert export.metrics["sites"] == 2.0 and export.metrics["training_seconds"] >= 0.1
    assert statuses[1][0] == "declined"
    assert statuses[1][1].startswith("budget-exhausted: exporting round 2 would take")
    assert epsilon == pytest.approx(10.7255, rel=1e-3) and epsilon <= BUDGET
    # Persisted: a restarted region starts from the export it already made.
    ledger = SiteLevelLedger(tmp_path / "agg-a" / "site-level-ledger.jsonl")
    assert len(ledger.rounds) == 1
    (record,) = ledger.records  # the export of round 1, over the coordinator's first model
    assert (record["round"], record["sites"], record["population"]) == (1, 2, 2)
    assert isinstance(record["base_sha256"], str) and len(record["base_sha256"]) == 64
    assert ledger.fixed_size_epsilon(1e-5) == pytest.approx(epsilon)
