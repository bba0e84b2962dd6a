"""The site agent against a real mTLS coordinator service, in one process."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsov.codec import Manifest
from fedsov.config import (
    Backoff,
    ClientEndpoint,
    ModelConfig,
    PrivacyConfig,
    TlsPaths,
    TrainerConfig,
)
from fedsov.exceptions import FedsovError, PolicyViolation
from fedsov.messages import TrainingPlan, TrainTask
from fedsov.modelref import build_model
from fedsov.node.engine import Engine
from fedsov.node.model import state_to_numpy
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.privacy.accountant import MechanismStep, compute_epsilon, merge_history
from fedsov.privacy.ledger import PrivacyLedger
from fedsov.simulation.datasets import load_digits
from fedsov.site.agent import SiteAgent
from fedsov.site.config import SiteConfig
from fedsov.site.data import DataSpec, save_npz
from fedsov.site.trainer import evaluate
from fedsov.testing import make_engine
from fedsov.transport.server import RunningServer, start_server
from fedsov.transport.service import FederationService

MODEL = ModelConfig("fedsov.simulation.models:mlp", {"in_features": 64, "hidden": 32})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1")),
        NodeSpec("site-1", Role.site, "EU"),
    ]
    return build_pki(tmp_path_factory.mktemp("pki"), federation="agent-fed", nodes=nodes)


def site_config(
    tmp_path: Path, pki: dict[str, NodePaths], port: int, name: str = "site-1"
) -> SiteConfig:
    data = tmp_path / "site.npz"
    save_npz(data, load_digits().subset(np.arange(300)))
    p = pki["site-1"]
    return SiteConfig(
        source=tmp_path / "site.toml",
        name=name,
        seed=1,
        device="cpu",
        upstream=ClientEndpoint(
            address=f"127.0.0.1:{port}", tls=TlsPaths(p.cert, p.key, p.ca), server_name="localhost"
        ),
        data=DataSpec(path=data),
        model=MODEL,
        privacy=PrivacyConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5),
        backoff=Backoff(initial_s=0.1, max_s=0.3, max_attempts=50),
    )


def engine(tmp_path: Path, rounds: int, plan: TrainingPlan | None = None) -> Engine:
    initial = state_to_numpy(build_model(MODEL.factory, MODEL.kwargs, seed=0))
    return make_engine(
        tmp_path,
        initial,
        federation="agent-fed",
        num_rounds=rounds,
        timeout_s=60,
        plan=plan or TrainingPlan(1, 32, 0.5),
    )


def test_site_waits_for_a_late_coordinator_then_trains_every_round(
    tmp_path: Path, pki: dict[str, NodePaths], caplog: pytest.LogCaptureFixture
) -> None:
    async def refused(site_run: asyncio.Future[Any]) -> None:
        """Until the site was refused at least once (it backs off, still running)."""
        while not any("upstream unreachable" in r.message for r in caplog.records):
            assert not site_run.done(), site_run
            await asyncio.sleep(0.01)
        assert not site_run.done()

    async def scenario() -> None:
        c = pki["coordinator"]
        tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
        eng = engine(tmp_path, rounds=2)
        # The port stays ours throughout: bound (SO_REUSEPORT, as gRPC binds) but not
        # listening, so the site is refused until the server listens on it too.
        with socket.socket() as reserved:
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            reserved.bind(("127.0.0.1", 0))
            port = reserved.getsockname()[1]
            agent = SiteAgent(site_config(tmp_path, pki, port))
            site_run = asyncio.ensure_future(agent.run())
            server: RunningServer | None = None
            try:
                await asyncio.wait_for(refused(site_run), 60)
                server = await start_server(
                    FederationService(eng, tls=tls), address=f"127.0.0.1:{port}", tls=tls
                )
                reports = await asyncio.wait_for(eng.run(), 120)
                outcome = await asyncio.wait_for(site_run, 30)
            finally:
                site_run.cancel()
                await asyncio.gather(site_run, return_exceptions=True)
                if server is not None:
                    await server.stop(0)
        assert [r.completed for r in reports] == [True, True]
        assert outcome.rounds_trained == 2
        assert outcome.finished is not None and outcome.finished.rounds == 2
        (site,) = reports[-1].sites
        assert site.status == "accepted" and site.privacy is not None
        assert site.privacy.epsilon == pytest.approx(outcome.epsilon)
        assert site.privacy.total_steps == 2 * 10  # ceil(300 / 32) Poisson steps a round
        assert eng.model.round == 2

    with caplog.at_level(logging.WARNING, logger="fedsov.participant"):
        asyncio.run(scenario())
    assert any("upstream unreachable" in r.message for r in caplog.records)


def test_certificate_of_another_name_is_refused_before_dialing(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    with pytest.raises(FedsovError, match=r"site\.name is 'site-9' but the certificate"):
        SiteAgent(site_config(tmp_path, pki, 1, name="site-9"))


FLOWER_APP = Path(__file__).resolve().parents[2] / "examples" / "flower-app"

SAMPLE_DP_PLAN = """
[federation]
name = "agent-fed"

[model]
factory = "fedsov.simulation.models:mlp"

[rounds]
num_rounds = 1

[[nodes]]
name = "coordinator"
tier = "global"
jurisdiction = "EU"

[[nodes]]
name = "site-1"
tier = "edge"
jurisdiction = "EU"
upstream = "coordinator"
dp = "{dp}"

[policy]
sample_dp = ["EU"]
"""


@pytest.mark.parametrize(
    ("dp", "enabled", "lacking"),
    [
        ("update", True, "the plan entry of 'site-1' says dp = \"update\""),
        ("sample", False, "the update of 'site-1' is not trained with sample-level DP"),
    ],
)
def test_a_site_without_sample_dp_where_it_is_required_refuses_to_start(
    tmp_path: Path, pki: dict[str, NodePaths], dp: str, enabled: bool, lacking: str
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(SAMPLE_DP_PLAN.format(dp=dp))
    config = site_config(tmp_path, pki, 1)
    config = replace(config, plan=plan, privacy=replace(config.privacy, enabled=enabled))
    with pytest.raises(PolicyViolation, match=r"sample-dp-required: EU requires") as refused:
        SiteAgent(config)
    assert lacking in str(refused.value)


@pytest.mark.parametrize(("dp", "refused"), [("update", True), ("sample", False)])
def test_a_flower_app_site_is_refused_where_sample_dp_is_required_unless_it_uses_make_private(
    tmp_path: Path, pki: dict[str, NodePaths], dp: str, refused: bool
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(SAMPLE_DP_PLAN.format(dp="sample"))  # the entry says sample; the app not
    app = TrainerConfig(kind="flower", app="flower_app.client_app:app", app_dir=FLOWER_APP, dp=dp)
    config = replace(site_config(tmp_path, pki, 1), plan=plan, trainer=app)
    if refused:
        with pytest.raises(PolicyViolation, match=r"sample-dp-required: EU requires") as err:
            SiteAgent(config)
        assert "the update of 'site-1' is not trained with sample-level DP" in str(err.value)
    else:
        assert SiteAgent(config).dataset_id  # started: the app imported, the data fits


def test_site_refuses_the_round_that_would_cross_its_budget(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    # ε after 1, 2, 3 rounds here: 3.43, 4.59, 5.55 (PLD, replace-one, δ=1e-5). Budget 5:
    # two rounds.
    async def scenario() -> tuple[list[object], SiteAgent]:
        c = pki["coordinator"]
        tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
        eng = engine(tmp_path, rounds=3)
        server = await start_server(FederationService(eng, tls=tls), address="127.0.0.1:0", tls=tls)
        agent = SiteAgent(replace(site_config(tmp_path, pki, server.port), budget_epsilon=5.0))
        site_run = asyncio.ensure_future(agent.run())
        try:
            with pytest.raises(FedsovError, match="round 3 failed"):
                await asyncio.wait_for(eng.run(), 120)
            await asyncio.wait_for(site_run, 30)
        finally:
            site_run.cancel()
            await server.stop(0)
        return list(eng.reports), agent

    reports, agent = asyncio.run(scenario())
    statuses = [r.sites[0].status for r in reports]  # type: ignore[attr-defined]
    assert statuses == ["accepted", "accepted", "declined"]
    reason = reports[-1].sites[0].reason  # type: ignore[attr-defined]
    assert reason.startswith("budget-exhausted: round 3 would take ε to 5.550 > budget 5")
    ledger = PrivacyLedger(tmp_path / "site-1.privacy-ledger.jsonl")
    assert len(ledger.entries) == 2
    spent = ledger.epsilon(agent.dataset_id, delta=1e-5)
    assert spent == pytest.approx(agent.epsilon) and spent <= 5.0

    # A restart composes with the ledger: the site is still out of budget.
    async def restart() -> float:
        again = SiteAgent(replace(site_config(tmp_path, pki, 1), budget_epsilon=5.0))
        trainer = again._trainer_for(
            TrainTask("t", 3, "", 0, Manifest(()), TrainingPlan(1, 32, 0.5), 0.0, 0)
        )
        return trainer.epsilon()

    assert asyncio.run(restart()) == pytest.approx(spent)


SITE_TOML = """
[site]
name = "site-1"
[upstream]
address = "127.0.0.1:1"
insecure = true
[data]
path = "{data}"
[model]
factory = "fedsov.simulation.models:mlp"
kwargs = {{ in_features = 64, hidden = 32, num_classes = 10 }}
[privacy]
noise_multiplier = 1.0
"""


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            "features",
            r"site\.npz: features of shape \(32,\) do not fit the model "
            r"fedsov\.simulation\.models:mlp: RuntimeError: mat1 and mat2 shapes",
        ),
        (
            "labels",
            r"site\.npz: labels run from 1 to 10, but the model fedsov\.simulation\.models:mlp "
            r"has 10 outputs \(labels 0\.\.9\)",
        ),
    ],
)
def test_data_that_does_not_fit_the_model_stops_the_site_at_start_up(
    tmp_path: Path, shape: str, message: str
) -> None:
    """Exit 2 naming the file and the mismatch, before the site dials anyone."""
    import subprocess
    import sys

    digits = load_digits().subset(np.arange(100))
    if shape == "features":
        bad = type(digits)(digits.x[:, :32], digits.y)
    else:
        bad = type(digits)(digits.x, digits.y + 1)  # labels 1..10
    save_npz(tmp_path / "site.npz", bad)
    config = tmp_path / "site.toml"
    config.write_text(SITE_TOML.format(data=tmp_path / "site.npz"))
    proc = subprocess.run(
        [sys.executable, "-m", "fedsov", "site", "--config", str(config), "--insecure"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert re.search(message, " ".join(proc.stderr.split())), proc.stderr[-2000:]
    assert "joined federation" not in proc.stderr


def test_a_round_whose_training_fails_is_declined_and_spends_no_epsilon(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    """A learning rate that makes training diverge: the site declines with the reason, the
    coordinator's report shows it, and the ledger records nothing for that round."""

    async def scenario() -> list[object]:
        c = pki["coordinator"]
        tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
        eng = engine(tmp_path, 1, TrainingPlan(1, 32, 1e38))  # diverges: the weights overflow
        server = await start_server(FederationService(eng, tls=tls), address="127.0.0.1:0", tls=tls)
        agent = SiteAgent(site_config(tmp_path, pki, server.port))
        site_run = asyncio.ensure_future(agent.run())
        try:
            with pytest.raises(FedsovError, match="round 1 failed"):
                await asyncio.wait_for(eng.run(), 120)
        finally:
            site_run.cancel()
            await server.stop(0)
        return list(eng.reports)

    reports = asyncio.run(scenario())
    assert reports
    for report in reports:
        (site,) = report.sites  # type: ignore[attr-defined]
        assert site.status == "declined"
        assert site.reason.startswith("training-failed: local training diverged"), site.reason
    ledger = PrivacyLedger(tmp_path / "site-1.privacy-ledger.jsonl")
    assert ledger.entries == []


def test_federated_evaluation_is_released_noised_and_counted_in_the_sites_epsilon(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> tuple[list[Any], SiteAgent]:
        c = pki["coordinator"]
        tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
        eng = engine(tmp_path, 2, TrainingPlan(1, 32, 0.5, evaluate=True))
        server = await start_server(FederationService(eng, tls=tls), address="127.0.0.1:0", tls=tls)
        agent = SiteAgent(site_config(tmp_path, pki, server.port))
        site_run = asyncio.ensure_future(agent.run())
        try:
            reports = await asyncio.wait_for(eng.run(), 120)
            await asyncio.wait_for(site_run, 30)
        finally:
            site_run.cancel()
            await server.stop(0)
        return list(reports), agent

    reports, agent = asyncio.run(scenario())
    first, second = (r.federated for r in reports)
    assert first["accuracy/examples"] == second["accuracy/examples"] == 300.0
    # Round 1 scored the initial model. 300 examples, z = 5, two scores: std 5·√2/2 ≈ 3.5
    # on the correct count (σ_acc ≈ 0.012) and on the clipped loss sum / 10 (σ ≈ 0.12)
    initial = build_model(MODEL.factory, MODEL.kwargs, seed=0)
    data = load_digits().subset(np.arange(300))
    accuracy, loss = evaluate(initial, data, device="cpu")  # no record's loss exceeds 10
    assert abs(first["accuracy"] - accuracy) < 6 * 0.012
    assert abs(first["loss"] - loss) < 6 * 0.12
    sent = reports[0].sites[0].metrics
    released = {"eval/accuracy", "eval/accuracy/n", "eval/loss", "eval/loss/n"}
    assert set(sent) == released | {"training_seconds"}  # that time is public metadata
    entries = agent.ledger.entries
    evaluation = MechanismStep(5.0, 1.0, 1)
    assert [e.step == evaluation for e in entries] == [False, True, False, True]
    assert {e.unit for e in entries} == {"record"}
    history = merge_history([e.step for e in entries])
    expected = compute_epsilon(history=history, delta=1e-5)
    assert reports[-1].sites[0].privacy.epsilon == pytest.approx(expected)  # type: ignore[union-attr]
    assert agent.epsilon == pytest.approx(expected)
    without = compute_epsilon(history=[e.step for e in entries if e.step != evaluation], delta=1e-5)
    assert expected > without
