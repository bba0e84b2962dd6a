"""The plan enforced at run time, with real processes over mTLS on loopback."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from fedsov.audit.ledger import read_ledger
from fedsov.pki import NodeIdentity, Role, issue_certificate, load_ca, write_certificate
from fedsov.pki._keys import load_private_key
from fedsov.policy.plan import load_plan
from fedsov.simulation.hierarchy import Deployment, launch, prepare_deployment
from fedsov.simulation.processes import ProcessGroup
from fedsov.testing import two_jurisdiction_plan


def deploy(tmp_path: Path, paris_upstream: str = "agg-eu") -> Deployment:
    path = tmp_path / "plan.toml"
    path.write_text(
        two_jurisdiction_plan(
            name="guarded", seed=3, rounds=2, timeout_s=25, paris_upstream=paris_upstream
        )
    )
    return prepare_deployment(load_plan(path), tmp_path / "run")


def run(dep: Deployment, *, kill: tuple[str, ...] = ()) -> ProcessGroup:
    group = ProcessGroup(dep.out / "logs", log_level="INFO", console=Console(stderr=True))
    with group:
        launch(dep, group)
        for name in kill:
            group.procs[name].kill()
        coordinator = group.procs["coordinator"]
        deadline = time.monotonic() + 240
        while coordinator.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert coordinator.poll() is not None, "the federation did not finish"
    return group


def rounds(dep: Deployment) -> list[dict[str, object]]:
    lines = (dep.out / "rounds.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def completed(dep: Deployment) -> list[dict[str, object]]:
    """The attempts that completed, one per round if the federation went on. (On a
    loaded machine a round's first attempt may fail because the sites below a region
    were still starting: it is retried, and that is not what these tests are about.)"""
    done = [r for r in rounds(dep) if r["completed"]]
    assert [r["round"] for r in done] == [1, 2], rounds(dep)
    return done


def reissue(dep: Deployment, node: str, *, jurisdiction: str) -> None:
    """Give ``node`` a CA-signed certificate that says another jurisdiction."""
    ca = load_ca(dep.out / "pki")
    paths = dep.pki[node]
    key = load_private_key(paths.key)
    now = dt.datetime.now(dt.UTC)
    cert = issue_certificate(
        ca,
        identity=NodeIdentity(node, Role.site, jurisdiction, dep.plan.federation),
        public_key=key.public_key(),
        not_before=now - dt.timedelta(minutes=5),
        not_after=now + dt.timedelta(days=1),
    )
    write_certificate(paths.cert, cert)


@pytest.mark.e2e
def test_certificate_jurisdiction_must_match_the_plan(tmp_path: Path) -> None:
    dep = deploy(tmp_path)
    reissue(dep, "berlin", jurisdiction="IN")  # the plan says EU
    group = run(dep)
    assert group.procs["berlin"].returncode == 2
    log = group.log("berlin").read_text()
    assert "PERMISSION_DENIED" in log
    assert "certificate of 'berlin' says jurisdiction IN, the plan says EU" in log
    assert "certificate of 'berlin' says jurisdiction IN" in group.log("agg-eu").read_text()
    refused = [
        r
        for r in read_ledger(dep.node_out("agg-eu") / "audit" / "ledger.jsonl")
        if r.event == "policy-refused"
    ]
    assert refused and {(r.peer, r.decision) for r in refused} == {("berlin", "admission")}
    completed(dep)  # the federation went on without that link


@pytest.mark.e2e
def test_site_refuses_to_send_to_a_forbidden_upstream(tmp_path: Path) -> None:
    dep = deploy(tmp_path, paris_upstream="agg-in")  # EU residency: EU only
    group = run(dep)
    assert group.procs["paris"].returncode == 2
    log = group.log("paris").read_text()
    assert "'paris' refuses to send to 'agg-in'" in log
    assert "residency of EU allows sending to EU, not to IN" in log
    (refusal,) = read_ledger(dep.out / "configs" / "paris.audit.jsonl")
    assert (refusal.event, refusal.peer, refusal.decision) == (
        "policy-refused",
        "agg-in",
        "residency",
    )
    # agg-in never heard from paris: the refusal happened before dialing.
    assert "paris" not in group.log("agg-in").read_text()
    completed(dep)


@pytest.mark.e2e
def test_region_below_k_exports_nothing(tmp_path: Path) -> None:
    dep = deploy(tmp_path)
    run(dep, kill=("delhi",))  # agg-in keeps 1 site; IN exports only aggregates of >= 2
    for r in completed(dep):
        status = {s["site"]: (s["status"], s["reason"]) for s in r["sites"]}  # type: ignore[index]
        assert status["agg-eu"][0] == "accepted"
        assert status["agg-in"][0] == "declined"
        assert "below-k" in status["agg-in"][1]
    region = json.loads((dep.node_out("agg-in") / "summary.json").read_text())
    assert region["exported_rounds"] == []
    assert len(region["declined_rounds"]) == 2
