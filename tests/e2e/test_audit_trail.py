"""A hierarchical run leaves a verifiable audit trail and a model lineage.

One simulated federation across EU and IN (every node its own process over mTLS):
every ledger verifies against its node's certificate and the checkpoints its
upstream kept; both ends of every link reconcile; a tampered ledger does not;
the compliance report lists each border crossing, all aggregates of >= k sites;
the final model's lineage names exactly the sites that contributed, and exports
to a loadable torch model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fedsov.audit.checkpoint import read_checkpoints
from fedsov.audit.ledger import read_ledger
from fedsov.audit.reconcile import reconcile
from fedsov.audit.signing import load_certificates
from fedsov.audit.verify import verify_ledger
from fedsov.policy.plan import Plan, load_plan
from fedsov.testing import two_jurisdiction_plan

pytestmark = pytest.mark.e2e


def ledger_of(out: Path, plan: Plan, node: str) -> Path:
    kind = {n.name: n.tier.value for n in plan.nodes}[node]
    if kind == "global":
        return out / "audit" / "ledger.jsonl"
    if kind == "regional":
        return out / "nodes" / node / "audit" / "ledger.jsonl"
    return out / "configs" / f"{node}.audit.jsonl"


def held_by_upstream(out: Path, plan: Plan, node: str) -> Path:
    upstream = plan.node(node).upstream
    assert upstream is not None
    return ledger_of(out, plan, upstream).parent / "checkpoints" / f"{node}.jsonl"


def fedsov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsov", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Plan]:
    root = tmp_path_factory.mktemp("audited")
    plan = two_jurisdiction_plan(name="audited", seed=11, rounds=3, timeout_s=60, in_budget=1000)
    (root / "plan.toml").write_text(plan)
    out = root / "run"
    proc = fedsov("simulate", str(root / "plan.toml"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, load_plan(out / "plan.toml")


def test_every_ledger_verifies_against_its_certificate_and_upstream_checkpoints(
    run: tuple[Path, Plan],
) -> None:
    out, plan = run
    for node in plan.nodes:
        path = ledger_of(out, plan, node.name)
        cert = out / "pki" / node.name / f"{node.name}.pem"
        held = () if node.upstream is None else (held_by_upstream(out, plan, node.name),)
        checkpoints = [c for p in held for c in read_checkpoints(p)]
        result = verify_ledger(path, certificate=load_certificates(cert), checkpoints=checkpoints)
        assert result.ok, (node.name, result.finding)
        records = read_ledger(path)
        sent = [r for r in records if r.event == "update-sent"]
        assert len(checkpoints) == len(sent), node.name  # one kept with every update
        assert {r.plan_sha256 for r in records} == {plan.sha256}
        assert all(r.node == node.name and r.jurisdiction == node.jurisdiction for r in records)


def test_both_ends_of_every_link_reconcile(run: tuple[Path, Plan]) -> None:
    out, plan = run
    for node in plan.nodes:
        if node.upstream is None:
            continue
        report = reconcile(ledger_of(out, plan, node.name), ledger_of(out, plan, node.upstream))
        assert report.ok, (node.name, [m.to_dict() for m in report.mismatches])
        transfers = [
            r
            for r in read_ledger(ledger_of(out, plan, node.name))
            if r.event in ("update-sent", "model-received")
        ]
        assert report.matched == len(transfers) >= 2, node.name  # every one of them


def test_a_tampered_ledger_no_longer_reconciles(run: tuple[Path, Plan], tmp_path: Path) -> None:
    out, plan = run
    lines = ledger_of(out, plan, "mumbai").read_text().splitlines(keepends=True)
    sent = next(i for i, line in enumerate(lines) if '"event":"update-sent"' in line)
    record: dict[str, Any] = json.loads(lines[sent])
    record["content_sha256"] = "0" * 64  # mumbai now claims to have sent something else
    lines[sent] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    forged = tmp_path / "mumbai.audit.jsonl"
    forged.write_text("".join(lines))
    report = reconcile(forged, ledger_of(out, plan, "agg-in"))
    kinds = sorted(str(m.kind) for m in report.mismatches)
    assert not report.ok and kinds == ["hash-differs"], kinds
    proc = fedsov("audit", "reconcile", str(forged), str(ledger_of(out, plan, "agg-in")))
    assert proc.returncode == 1 and "hash-differs" in proc.stdout
    assert not verify_ledger(forged).ok  # and the ledger itself no longer verifies


def test_final_model_lineage_names_exactly_the_sites_behind_it(
    run: tuple[Path, Plan], tmp_path: Path
) -> None:
    out, plan = run
    attempts = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    last = [r for r in attempts if r["completed"]][-1]
    accepted = [s for s in last["sites"] if s["status"] == "accepted"]
    proc = fedsov("models", "show", str(out), "latest", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["sha256"] == last["model_sha256"] and shown["round"] == last["round"]
    assert shown["regions"] == sorted(s["site"] for s in accepted)
    assert shown["sites"] == sorted(c for s in accepted for c in s["contributors"])
    assert set(shown["sites"]) <= {"paris", "berlin", "mumbai", "delhi"} and shown["sites"]
    assert shown["plan_sha256"] == plan.sha256
    assert [step["round"] for step in shown["lineage"]] == list(range(last["round"], -1, -1))

    import numpy as np
    import safetensors.numpy
    import torch

    from fedsov.modelref import build_model

    for fmt, name in (("torch", "final.pt"), ("safetensors", "final.safetensors")):
        proc = fedsov("models", "export", str(out), "latest", "--out", str(tmp_path / name))
        assert proc.returncode == 0, (fmt, proc.stderr)
    model = build_model(plan.model.factory, plan.model.kwargs)
    model.load_state_dict(torch.load(tmp_path / "final.pt", weights_only=True), strict=True)
    arrays = safetensors.numpy.load_file(str(tmp_path / "final.safetensors"))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), arrays[key])


def test_compliance_report_lists_each_border_crossing_of_k_sites(run: tuple[Path, Plan]) -> None:
    out, plan = run
    proc = fedsov("audit", "report", str(out), "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["ok"] and report["federation"] == "audited"
    summary = report["summary"]
    assert summary["ledgers"] == summary["ledgers_ok"] == summary["ledgers_authenticated"] == 7
    # What left IN: agg-in's exports to the EU coordinator, nothing from its sites.
    exported = [r for r in read_ledger(ledger_of(out, plan, "agg-in")) if r.event == "update-sent"]
    crossings = report["crossings"]
    assert len(crossings) == len(exported) >= 1
    assert {(c["from"], c["to"]) for c in crossings} == {("agg-in", "coordinator")}
    for crossing in crossings:
        assert crossing["sites"] >= 2 and crossing["dp"]["level"] == "site"
        assert crossing["received_recorded"] is True and crossing["respects_plan"] is True
    assert summary["only_aggregates_of_k_sites_crossed"] is True
    assert summary["min_sites_per_jurisdiction_pair"] == {"IN->EU": 2}
    assert [m["round"] for m in report["models"]] == list(range(1, plan.rounds.num_rounds + 1))
    markdown = fedsov("audit", "report", str(out))
    assert markdown.returncode == 0 and "Border crossings" in markdown.stdout


def test_every_site_is_in_the_first_round(run: tuple[Path, Plan]) -> None:
    """A region waits for all its sites before its first round (sites start after it)."""
    out, plan = run
    attempts = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    first = next(r for r in attempts if r["round"] == 1 and r["completed"])
    contributors = {
        c for s in first["sites"] if s["status"] == "accepted" for c in s["contributors"]
    }
    assert contributors == {n.name for n in plan.nodes if n.tier.value == "edge"}
