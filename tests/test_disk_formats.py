"""Today's code reads the on-disk formats it wrote before: tests/fixtures/v<N>/.

The fixtures (a coordinator's state store, model blobs, audit ledgers and
checkpoints, privacy ledgers, state schema v1 and v2) are written once by
tests/fixtures/make_fixtures.py and committed; see its docstring. A change that
cannot read them any more breaks a deployed federation's restart, its audit or its
privacy accounting: bump the format version and migrate instead.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixture_files import FEDERATION, FIXTURES, SITES, copy_fixture, hashes, sums
from typer.testing import CliRunner

from fedsov.audit import (
    AuditLedger,
    Signer,
    load_certificates,
    read_checkpoints,
    read_ledger,
    verify_ledger,
)
from fedsov.cli.models import app as models_app
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.exceptions import StateError
from fedsov.messages import TrainingPlan
from fedsov.modelref import build_model
from fedsov.models.registry import ModelRegistry
from fedsov.node.engine import EngineSettings, RoundReport
from fedsov.node.model import GlobalModel, ModelStore, state_to_numpy
from fedsov.node.state_sqlite import STATE_FILE, SqliteStateStore
from fedsov.policy.plan import load_plan
from fedsov.privacy.accountant import MechanismStep, compute_epsilon
from fedsov.privacy.ledger import PrivacyLedger
from fedsov.strategy import FedAvg

runner = CliRunner()
DELTA = 1e-5
DECLINE = (
    "budget-exhausted: round 2 would take ε to 3.763 > budget 3 (δ=1e-05, pld); "
    "this site trains no more"
)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A copy of the v2 run folder."""
    return copy_fixture("v2", tmp_path / "v2") / "run"


def coordinator(run: Path) -> Path:
    return run / "coordinator"


def stamp(db: Path, version: str) -> None:
    """Set the schema version a state database says it has, as another fedsov would."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    conn.close()


def stamped(db: Path) -> str:
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    return str(row[0])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_fixtures_are_the_ones_make_fixtures_wrote(version: str) -> None:
    """Nothing edits the committed fixtures by hand, and no test writes into them."""
    assert hashes(FIXTURES / version) == sums(FIXTURES / version)


# ----- the coordinator's state store ------------------------------------------------


def check_reports(reports: list[dict[str, Any]], *, population: list[str]) -> None:
    """Round 1: every site's update; round 2: site-a's, site-b's refused, site-c declined."""
    assert [(r["round"], r["attempt"], r["completed"]) for r in reports] == [
        (1, 1, True),
        (2, 1, True),
    ]
    first, second = (RoundReport.from_json(r) for r in reports)
    assert [(s.site, s.status, s.num_examples) for s in first.sites] == [
        ("site-a", "accepted", 120),
        ("site-b", "accepted", 80),
        ("site-c", "accepted", 40),
    ]
    assert [(s.site, s.status, s.reason) for s in second.sites] == [
        ("site-a", "accepted", ""),
        ("site-b", "rejected", "tensor '1.weight' holds nan at element 0"),
        ("site-c", "declined", DECLINE),
    ]
    a1, a2 = first.sites[0].privacy, second.sites[0].privacy
    assert a1 is not None and a2 is not None
    assert (a1.total_steps, a2.total_steps, a2.accountant) == (40, 80, "pld")
    assert a2.epsilon == pytest.approx(1.407847863437084, rel=1e-9)
    assert [list(r.population) for r in (first, second)] == [population, population]
    assert first.model_sha256 != second.model_sha256


def check_store(store: SqliteStateStore) -> None:
    assert store.open_round_row() is None
    assert [r.site for r in store.receipts(1, 1)] == list(SITES)
    assert [r.site for r in store.receipts(2, 1)] == ["site-a"]
    assert [(t.site, t.status) for t in store.tasks(2, 1)] == [
        ("site-a", "accepted"),
        ("site-b", "rejected"),
        ("site-c", "declined"),
    ]
    assert store.tasks(2, 1)[2].reason == DECLINE
    latest = store.latest_model()
    assert latest is not None and latest.round == 2
    assert latest.metadata["contributors"] == ["site-a"]
    assert latest.metadata["epsilon"] == {"site-a": pytest.approx(1.407847863437084)}
    assert latest.metadata["plan_sha256"] is not None
    assert store.strategy_state() == {}


def test_a_v2_state_store_is_read_as_written(run: Path) -> None:
    db = coordinator(run) / STATE_FILE
    store = SqliteStateStore(db)
    check_reports(store.reports(), population=list(SITES))
    check_store(store)
    rounds = [store.model(r["model_sha256"]) for r in store.reports()]
    assert [m.round if m else None for m in rounds] == [1, 2]
    store.close()
    assert stamped(db) == "2"


def test_a_v1_state_store_is_migrated_to_v2_once(tmp_path: Path) -> None:
    """State schema v1 stored no populations: they read as empty, everything else as v2."""
    db = copy_fixture("v1", tmp_path / "v1") / "coordinator" / STATE_FILE
    assert stamped(db) == "1"
    store = SqliteStateStore(db)
    check_reports(store.reports(), population=[])
    check_store(store)
    store.close()
    assert stamped(db) == "2"
    again = SqliteStateStore(db)  # migrated: read as it is now
    check_reports(again.reports(), population=[])
    again.close()


def test_a_resumed_engine_takes_up_the_v2_state(run: Path, tmp_path: Path) -> None:
    """The coordinator restarted with the plan's model and seed finds both rounds done."""
    plan = load_plan(run / "plan.toml")
    module = build_model(plan.model.factory, plan.model.kwargs, seed=plan.seed)
    out = coordinator(run)
    state = SqliteStateStore(out / STATE_FILE)
    eng = ScheduledEngine(
        EngineSettings(
            federation=FEDERATION,
            min_sites=3,
            min_updates=1,
            sites_per_round=0,
            round_timeout_s=60.0,
            start_timeout_s=30.0,
            seed=plan.seed,
        ),
        Schedule(num_rounds=2, max_attempts=1, training=TrainingPlan(1, 8, 0.5)),
        initial=GlobalModel.from_arrays(state_to_numpy(module), round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(out / "models"),
        work_dir=tmp_path / "work",
        state=state,
    )
    assert eng.resume() is True
    assert (eng.model.round, [r.round for r in eng.reports]) == (2, [1, 2])
    assert eng.model.sha256 == eng.reports[-1].model_sha256
    state.close()


def test_the_model_blobs_hold_the_fedavg_of_each_round(run: Path) -> None:
    """Round 1: (0.5·120 - 0.25·80 + 1·40) / 240 = 1/3 on every weight; round 2: + 1/8."""
    registry = ModelRegistry.open(coordinator(run))
    versions = registry.versions()
    assert [(v.round, v.contributors) for v in versions] == [
        (0, ()),
        (1, SITES),
        (2, ("site-a",)),
    ]
    assert [v.parent for v in versions] == [None, versions[0].sha256, versions[1].sha256]
    models = [registry.load(v.sha256) for v in versions]  # each checked against its hash
    for moved, (before, after) in zip((1 / 3, 1 / 8), itertools.pairwise(models), strict=True):
        for name, value in after.items():
            np.testing.assert_allclose(value - before[name], moved, rtol=1e-5)


def test_models_are_listed_alike_from_a_v1_and_a_v2_state(run: Path, tmp_path: Path) -> None:
    v1 = copy_fixture("v1", tmp_path / "v1") / "coordinator"
    listed = []
    for out in (coordinator(run), v1):
        result = runner.invoke(models_app, ["list", str(out), "--json"])
        assert result.exit_code == 0, result.output
        listed.append(json.loads(result.stdout))
    assert listed[0] == listed[1]
    assert [m["round"] for m in listed[0]] == [0, 1, 2]
    assert stamped(v1 / STATE_FILE) == "1"  # read-only: not migrated


@pytest.mark.parametrize("version", ["3", "99"])
def test_a_state_of_a_newer_fedsov_is_refused_and_left_alone(run: Path, version: str) -> None:
    db = coordinator(run) / STATE_FILE
    stamp(db, version)
    said = rf"state schema version {version}, this fedsov reads 2 and older: it was written by "
    said += "a newer fedsov"
    with pytest.raises(StateError, match=said):
        SqliteStateStore(db)
    result = runner.invoke(models_app, ["list", str(coordinator(run)), "--json"])
    assert result.exit_code == 2
    assert "written by a newer fedsov" in " ".join(result.output.split())
    assert stamped(db) == version


@pytest.mark.parametrize("version", ["0", "abc", "2.0", "²", ""])
def test_a_state_of_an_unknown_version_is_refused(run: Path, version: str) -> None:
    """Not a version fedsov ever wrote (0 used to crash the migration with KeyError)."""
    db = coordinator(run) / STATE_FILE
    stamp(db, version)
    said = rf"unknown state schema version {version!r} \(this fedsov reads 1 to 2\)"
    with pytest.raises(StateError, match=said):
        SqliteStateStore(db)
    with pytest.raises(StateError, match=said):
        ModelRegistry.open(coordinator(run))
    assert stamped(db) == version


# ----- audit ledgers and checkpoints --------------------------------------------------


def ledger_of(run: Path, node: str) -> Path:
    if node == "coordinator":
        return coordinator(run) / "audit" / "ledger.jsonl"
    return run / "work" / node / f"{node}.audit.jsonl"


def cert_of(run: Path, node: str) -> list[Any]:
    return load_certificates(run / "pki" / node / f"{node}.pem")


@pytest.mark.parametrize("node", ["coordinator", *SITES])
def test_every_audit_ledger_verifies_against_its_certificate(run: Path, node: str) -> None:
    held = []
    if node != "coordinator":  # the heads the coordinator kept of the site's ledger
        held = read_checkpoints(coordinator(run) / "audit" / "checkpoints" / f"{node}.jsonl")
        assert held
    result = verify_ledger(ledger_of(run, node), certificate=cert_of(run, node), checkpoints=held)
    assert result.ok and result.finding is None, result.finding
    assert result.authenticated and result.node == node and result.jurisdiction == "EU"
    assert result.checkpoints_checked == len(held)
    records = read_ledger(ledger_of(run, node))
    assert records[-1].event == "checkpoint"  # closed
    assert {r.plan_sha256 for r in records} == {load_plan(run / "plan.toml").sha256}


def test_the_coordinator_ledger_holds_what_it_received_and_published(run: Path) -> None:
    records = read_ledger(ledger_of(run, "coordinator"))
    received = sorted((r.round, r.peer) for r in records if r.event == "update-received")
    assert received == [(1, "site-a"), (1, "site-b"), (1, "site-c"), (2, "site-a")]
    sent = sorted((r.round, r.peer) for r in records if r.event == "model-sent")
    assert sent == [(1, "site-a"), (1, "site-b"), (1, "site-c"), (2, "site-a"), (2, "site-b")]
    declined = [(r.round, r.peer, r.decision) for r in records if r.event == "task-declined"]
    assert declined == [(2, "site-c", "budget-exhausted")]
    published = [r for r in records if r.event == "model-published"]
    assert [(r.round, r.detail["contributors"]) for r in published] == [
        (1, list(SITES)),
        (2, ["site-a"]),
    ]
    store = SqliteStateStore(coordinator(run) / STATE_FILE)
    assert [r.content_sha256 for r in published] == [r["model_sha256"] for r in store.reports()]
    store.close()
    a2 = next(r for r in records if r.event == "update-received" and r.round == 2)
    assert a2.epsilon == pytest.approx(1.407847863437084)
    assert a2.detail["audit_head"]["seq"] == 4  # site-a's checkpoint before it sent


def test_a_v2_ledger_goes_on_with_todays_code(run: Path) -> None:
    """Reopened with its (test-only) key, appended to and closed: it still verifies."""
    path = ledger_of(run, "site-a")
    before = len(read_ledger(path))
    ledger = AuditLedger.open(
        path,
        signer=Signer.load(run / "pki" / "site-a" / "site-a.key"),
        node="site-a",
        jurisdiction="EU",
    )
    ledger.append(event="model-received", round=3, peer="coordinator", content_sha256="ab" * 32)
    ledger.close()
    result = verify_ledger(path, certificate=cert_of(run, "site-a"))
    assert result.ok and result.records == before + 2  # the record and a checkpoint


# ----- privacy ledgers ----------------------------------------------------------------


def privacy_ledger(run: Path, site: str) -> PrivacyLedger:
    return PrivacyLedger(run / "work" / site / f"{site}.privacy-ledger.jsonl")


@pytest.mark.parametrize(
    ("site", "rounds", "sample_rate", "epsilon"),
    [
        ("site-a", [1, 2], 0.02, 1.407847863437084),
        ("site-b", [1, 2], 0.02, 1.407847863437084),  # round 2 refused, its ε spent
        ("site-c", [1], 0.05, 2.6742910136379554),  # declined round 2
    ],
)
def test_each_site_privacy_ledger_holds_its_epsilon_history(
    run: Path, site: str, rounds: list[int], sample_rate: float, epsilon: float
) -> None:
    ledger = privacy_ledger(run, site)
    entries = ledger.entries
    assert [e.round for e in entries] == rounds
    assert {(e.site, e.jurisdiction, e.federation, e.unit) for e in entries} == {
        (site, "EU", FEDERATION, "record")
    }
    (dataset,) = {e.dataset for e in entries}
    assert ledger.history(dataset) == [MechanismStep(1.1, sample_rate, 40)] * len(rounds)
    assert ledger.epsilon(dataset, delta=DELTA) == pytest.approx(epsilon, rel=1e-6)
    assert compute_epsilon(history=ledger.history(dataset), delta=DELTA) == pytest.approx(
        epsilon, rel=1e-6
    )


def test_site_c_declined_what_its_ledger_says_would_cross_its_budget(run: Path) -> None:
    ledger = privacy_ledger(run, "site-c")
    (dataset,) = {e.dataset for e in ledger.entries}
    after = ledger.epsilon(dataset, delta=DELTA, extra=[MechanismStep(1.1, 0.05, 40)])
    assert f"{after:.3f}" == "3.763" and after > 3.0
