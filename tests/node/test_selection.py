"""Who takes part in a round: a secret sample of the connected sites, recorded with the
population it was drawn from; and what of a participant's update the round keeps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_rounds import chunks, delta, make_engine

from fedsov.codec import encode
from fedsov.messages import PrivacyLevel, PrivacyReport, UpdateHeader
from fedsov.node.engine import Engine, RoundReport, SiteResult
from fedsov.pki import NodeIdentity, Role
from fedsov.randomness import REPRODUCIBLE_ENV

POPULATION = [f"site-{i:02d}" for i in range(50)]


def engine(tmp_path: Path, *, sites_per_round: int = 0, seed: int = 3) -> Engine:
    return make_engine(
        tmp_path, num_rounds=1, min_updates=1, sites_per_round=sites_per_round, seed=seed
    )


def selections(tmp_path: Path) -> list[list[str]]:
    """Who two engines of the same config ask, 20 rounds of 5 of 50 sites each."""
    a, b = engine(tmp_path / "a", sites_per_round=5), engine(tmp_path / "b", sites_per_round=5)
    return [[*eng._select(number, 1, POPULATION)] for number in range(1, 21) for eng in (a, b)]


def test_selection_is_secret_even_with_the_same_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REPRODUCIBLE_ENV, raising=False)
    picks = selections(tmp_path)
    assert all(len(p) == 5 and set(p) <= set(POPULATION) for p in picks)
    # 20 rounds agreeing by chance: (1 / C(50, 5))^20 = 2^-424.
    assert picks[0::2] != picks[1::2]


def test_selection_repeats_only_in_the_insecure_reproducible_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REPRODUCIBLE_ENV, "1")
    picks = selections(tmp_path)
    assert picks[0::2] == picks[1::2]
    assert len({tuple(p) for p in picks}) > 1  # still a different sample each round


def identity(site: str) -> NodeIdentity:
    return NodeIdentity(site, Role.site, "EU", "fed")


async def one_round(eng: Engine, metrics: dict[str, float]) -> RoundReport:
    for site in POPULATION[:4]:
        await eng.subscribe(identity(site))
    run = asyncio.ensure_future(eng.run_round(1, training=eng.schedule.training))
    while eng.current is None:
        await asyncio.sleep(0.01)
    for record in list(eng.current.tasks.values()):
        enc = encode(delta(1.0))
        header = UpdateHeader(
            task_id=record.task.task_id,
            round=1,
            manifest=enc.manifest,
            num_examples=10,
            payload_size=enc.size,
            payload_sha256=enc.sha256,
            base_model_sha256=eng.current.model.sha256,
            privacy=PrivacyReport(enabled=False, epsilon=0.0, delta=0.0),
            metrics=metrics,
        )
        await eng.receive_update(identity(record.site), header, chunks(enc.payload))
    return await run


def test_a_round_records_the_population_its_sample_was_drawn_from(tmp_path: Path) -> None:
    eng = engine(tmp_path, sites_per_round=2)
    report = asyncio.run(one_round(eng, {}))
    assert report.completed and len(report.sites) == 2
    assert report.population == tuple(POPULATION[:4])
    assert {s.site for s in report.sites} <= set(report.population)
    stored = RoundReport.from_json(eng.state.reports()[0])
    assert stored.population == report.population


def test_per_site_training_metrics_are_dropped_on_receipt(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    metrics = {"train_loss": 0.3, "train_seconds": 1.2, "sites": 1.0}
    report = asyncio.run(one_round(eng, metrics))
    assert report.completed
    assert all(dict(s.metrics) == {"sites": 1.0} for s in report.sites)
    receipts = [r.header for r in eng.state.receipts(1, 1)]
    stored = json.dumps([report.to_json(), *eng.state.reports(), *receipts])  # rounds.jsonl too
    assert "train_loss" not in stored and "train_seconds" not in stored


def test_federated_evaluation_sums_are_kept_and_averaged_with_the_round(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    metrics = {
        "eval/accuracy": 7.0,
        "eval/accuracy/n": 10.0,
        "eval/bogus": 1.0,  # no count: not a release
        "eval/loss": 99.0,
        "eval/loss/n": 11.0,  # more examples than the update's 10: dropped
        "loss": 2.0,
    }
    report = asyncio.run(one_round(eng, metrics))
    kept = {"eval/accuracy": 7.0, "eval/accuracy/n": 10.0}
    assert all(dict(s.metrics) == kept for s in report.sites)
    n = 10.0 * len(report.sites)
    assert report.federated == {"accuracy": pytest.approx(0.7), "accuracy/examples": n}
    assert RoundReport.from_json(eng.state.reports()[0]).federated == report.federated


def test_a_stored_report_keeps_what_each_sites_epsilon_protects() -> None:
    update_level = PrivacyReport(
        enabled=True, epsilon=9.0, delta=1e-5, noise_multiplier=0.05, level=PrivacyLevel.UPDATE
    )
    site = SiteResult("paris", "t-1", "accepted", "", 40, update_level, {})
    report = RoundReport(1, 1, True, "a" * 64, 1.0, {}, (site,))
    (stored,) = RoundReport.from_json(json.loads(json.dumps(report.to_json()))).sites
    assert stored.privacy is not None and stored.privacy.level is PrivacyLevel.UPDATE
    older = report.to_json()
    del older["sites"][0]["level"]  # written before levels: derived from dp
    (derived,) = RoundReport.from_json(older).sites
    assert derived.privacy is not None and derived.privacy.effective_level is PrivacyLevel.SAMPLE
