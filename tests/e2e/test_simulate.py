"""A small federation end to end: real processes, real mTLS gRPC over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from dp_accounting import dp_event
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedsov.pki import NodePaths, NodeSpec, Role, build_pki

SCENARIO = """
name = "e2e"
seed = 3

[data]
dataset = "digits"
partition = "iid"
test_fraction = 0.2
sites = 3

[model]
factory = "fedsov.simulation.models:mlp"
kwargs = { in_features = 64, hidden = 64, num_classes = 10 }

[rounds]
num_rounds = 8
timeout_s = 60

[training]
local_epochs = 1
batch_size = 64
learning_rate = 1.0

[privacy]
noise_multiplier = 1.0
max_grad_norm = 1.0
delta = 1e-5
"""


def simulate(scenario: Path, out: Path, while_serving: Callable[[int], None] | None = None) -> str:
    """Run ``fedsov simulate`` as a user would; returns its stderr (the round log).

    ``while_serving``: called with the coordinator's port once it listens (the rounds
    cannot all be over by then: they wait for sites that start after it).
    """
    log = out.with_name(f"{out.name}.stderr")
    with open(log, "w+", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedsov", "simulate", str(scenario), "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
        try:
            if while_serving is not None:
                while_serving(coordinator_port(out / "coordinator.port", proc))
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        stderr.seek(0)
        text = stderr.read()
    assert proc.returncode == 0, text[-3000:]
    return text


def coordinator_port(port_file: Path, proc: subprocess.Popen[str]) -> int:
    """The port the simulation's coordinator wrote, once it listens."""
    deadline = time.monotonic() + 120
    while not port_file.exists():
        assert proc.poll() is None, "fedsov simulate ended before its coordinator listened"
        assert time.monotonic() < deadline, "the coordinator wrote no port file"
        time.sleep(0.05)
    return int(port_file.read_text())


def health(port: int, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status of a health check on the coordinator (``None``: plaintext)."""
    address = f"127.0.0.1:{port}"
    channel = (
        grpc.insecure_channel(address)
        if credentials is None
        else grpc.secure_channel(
            address, credentials, options=[("grpc.ssl_target_name_override", "localhost")]
        )
    )
    with channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def only_mtls(out: Path, foreign: NodePaths) -> Callable[[int], None]:
    """A check that the simulation's coordinator serves mTLS only: a site certificate of
    the simulation's CA is served; plaintext, TLS without a client certificate and a
    client certificate of another CA are refused."""

    def check(port: int) -> None:
        ca = (out / "pki" / "ca.pem").read_bytes()
        site = out / "pki" / "site-1"
        own = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(site / "site-1.key").read_bytes(),
            certificate_chain=(site / "site-1.pem").read_bytes(),
        )
        other_ca = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=foreign.key.read_bytes(),
            certificate_chain=foreign.cert.read_bytes(),
        )
        no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
        assert health(port, own) is grpc.StatusCode.OK  # the server is up...
        assert health(port, None) is grpc.StatusCode.UNAVAILABLE
        assert health(port, no_cert) is grpc.StatusCode.UNAVAILABLE
        assert health(port, other_ca) is grpc.StatusCode.UNAVAILABLE
        assert health(port, own) is grpc.StatusCode.OK  # ...and still was: refused by mTLS

    return check


@pytest.mark.e2e
def test_simulated_federation_trains_over_mtls_with_dp(tmp_path: Path) -> None:
    scenario = tmp_path / "e2e.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    # The same name and federation as the simulation's site-1, from another CA.
    foreign = build_pki(
        tmp_path / "foreign", federation="e2e", nodes=[NodeSpec("site-1", Role.site, "SIM")]
    )["site-1"]
    assert "round   8/8" in simulate(scenario, out, only_mtls(out, foreign))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["rounds"] == 8
    assert summary["final_accuracy"] >= 0.80
    assert len(summary["model_sha256"]) == 64
    model_file = Path(summary["model_file"])
    assert model_file.exists()
    expected_line = f"{model_file.name}"
    assert expected_line in model_file.with_suffix(".safetensors.sha256").read_text()

    assert sorted(summary["sites"]) == ["site-1", "site-2", "site-3"]
    for name, site in summary["sites"].items():
        assert site["rounds_contributed"] == 8, name
        assert site["examples"] > 400
        assert site["delta"] == 1e-5
        # The ε the site reported is dp-accounting's for replace-one neighbours (the
        # relation the docs name: N is public) and the same (σ, q, steps, δ): equal up
        # to the site's coarser, pessimistic discretisation (never below).
        oracle = PLDAccountant(NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4)
        event = dp_event.PoissonSampledDpEvent(site["sample_rate"], dp_event.GaussianDpEvent(1.0))
        reference = oracle.compose(event, site["total_steps"]).get_epsilon(1e-5)
        assert reference * (1 - 1e-9) <= site["epsilon"] <= reference * (1 + 5e-3)
        assert 0 < site["epsilon"] < 20

    # What the coordinator recorded of each update: nothing computed from a site's data
    # without noise (no loss), only the DP-protected update's public metadata, and its
    # training time in 0.1 s steps, no finer than the coordinator times it itself
    # (docs/privacy.md).
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert len(records) == 8
    for record in records:
        for result in record["sites"]:
            assert set(result["metrics"]) <= {"training_seconds"}, result
            seconds = result["metrics"].get("training_seconds", 0.1)
            assert 0 < seconds <= record["seconds"] + 0.1
            assert round(seconds * 10) == pytest.approx(seconds * 10, abs=1e-6)
    text = (out / "rounds.jsonl").read_text()
    assert "train_loss" not in text and "train_seconds" not in text

    coordinator_log = (out / "logs" / "coordinator.log").read_text()
    assert "Traceback" not in coordinator_log


ONE_SITE = (
    SCENARIO.replace("sites = 3", "sites = 1")
    .replace("num_rounds = 8", "num_rounds = 2")
    .replace("hidden = 64", "hidden = 16")
)


@pytest.mark.e2e
def test_two_runs_of_one_scenario_publish_different_models(tmp_path: Path) -> None:
    """The DP randomness is secret: the same config, seed and data give another model
    every run, so an upstream that knows them all cannot replay a site's training."""
    scenario = tmp_path / "one.toml"
    scenario.write_text(ONE_SITE)
    models = []
    for run in ("a", "b"):
        out = tmp_path / run
        simulate(scenario, out)
        models.append(json.loads((out / "summary.json").read_text())["model_sha256"])
    assert models[0] != models[1]
