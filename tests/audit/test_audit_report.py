"""``fedsov audit report``: a compliance report of a hierarchical run folder.

The run: paris and berlin (EU) under agg-eu, mumbai and delhi (IN) under agg-in, the
coordinator in the EU. The plan lets IN export only aggregates of >= k sites with
site-level DP; agg-in's export is the one update that crosses a border.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import digest, edit_byte, lines_of, write_lines
from typer.testing import CliRunner

from fedsov.audit import AuditLedger, Signer, read_ledger
from fedsov.audit.trail import AuditTrail
from fedsov.cli import app as fedsov_app
from fedsov.cli.audit import app
from fedsov.pki import NodeSpec, Role, build_pki, load_tls_material
from fedsov.policy.compliance import compliance_report, render_json, render_markdown
from fedsov.privacy.accountant import MechanismStep
from fedsov.privacy.ledger import PrivacyLedger
from fedsov.privacy.report import privacy_report
from fedsov.privacy.site_level import SiteLevelLedger
from fedsov.randomness import REPRODUCIBLE_ENV

runner = CliRunner()

FEDERATION = "consortium"
NODES: dict[str, tuple[Role, str, str | None]] = {
    "coordinator": (Role.coordinator, "EU", None),
    "agg-eu": (Role.aggregator, "EU", "coordinator"),
    "agg-in": (Role.aggregator, "IN", "coordinator"),
    "paris": (Role.site, "EU", "agg-eu"),
    "berlin": (Role.site, "EU", "agg-eu"),
    "mumbai": (Role.site, "IN", "agg-in"),
    "delhi": (Role.site, "IN", "agg-in"),
}
TIER = {Role.coordinator: "global", Role.aggregator: "regional", Role.site: "edge"}
SAMPLE_DP = {
    "level": "sample",
    "noise_multiplier": 1.5,
    "max_grad_norm": 1.0,
    "sample_rate": 0.1,
    "steps": 10,
    "accountant": "rdp",
}
SITE_DP = {"level": "site", "noise_multiplier": 1.0, "clip": 0.5, "accountant": "rdp-replace-one"}


def plan_toml(*, k: int = 2, site_dp: bool = True, in_residency: str = '"IN", "EU"') -> str:
    """A plan in the style of simulations/consortium.toml."""
    nodes = []
    for name, (role, jurisdiction, upstream) in NODES.items():
        nodes.append(
            f'[[nodes]]\nname = "{name}"\ntier = "{TIER[role]}"\n'
            f'jurisdiction = "{jurisdiction}"\n'
            + ("" if upstream is None else f'upstream = "{upstream}"\n')
        )
    return f"""# A consortium of two jurisdictions: only aggregates of >= {k} sites leave IN.
[federation]
name = "{FEDERATION}"
seed = 7

[model]
factory = "fedsov.simulation.models:mlp"
kwargs = {{ in_features = 64, hidden = 128, num_classes = 10 }}

[rounds]
num_rounds = 2
timeout_s = 120

[privacy]
noise_multiplier = 1.5
max_grad_norm = 1.0
delta = 1e-5

{chr(10).join(nodes)}
[policy.residency]
EU = ["EU"]
IN = [{in_residency}]

[policy.export]
IN = {{ min_sites = {k}, site_dp = {"true" if site_dp else "false"} }}

[policy.site_dp]
clip = 0.5
noise_multiplier = 1.0
delta = 1e-5

[policy.budgets]
site_epsilon = 15.0
jurisdiction_epsilon = {{ EU = 10.0, IN = 5000.0 }}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    specs = [NodeSpec(name, role, j) for name, (role, j, _) in NODES.items()]
    build_pki(folder, federation=FEDERATION, nodes=specs)
    return folder


def ledger_path(run: Path, node: str) -> Path:
    """Where the nodes keep their ledgers (the run-folder conventions)."""
    role = NODES[node][0]
    if role is Role.coordinator:
        return run / "audit" / "ledger.jsonl"
    if role is Role.aggregator:
        return run / "nodes" / node / "audit" / "ledger.jsonl"
    return run / "work" / node / f"{node}.audit.jsonl"


@dataclass
class Run:
    dir: Path
    pki: Path
    plan_sha256: str
    ledgers: dict[str, AuditLedger] = field(default_factory=dict)

    def ledger(self, node: str) -> AuditLedger:
        if node not in self.ledgers:
            self.ledgers[node] = AuditLedger.open(
                ledger_path(self.dir, node),
                signer=Signer.load(self.pki / node / f"{node}.key"),
                node=node,
                jurisdiction=NODES[node][1],
                plan_sha256=self.plan_sha256,
            )
        return self.ledgers[node]

    def update(
        self,
        sender: str,
        rnd: int,
        *,
        contributors: Sequence[str] = (),
        dp: dict[str, Any] | None = None,
        epsilon: float | None = None,
        received: bool = True,
        received_sha: str | None = None,
    ) -> str:
        """``sender`` uploads its round-``rnd`` update; its upstream accepts it."""
        upstream = NODES[sender][2]
        assert upstream is not None
        sha = digest(f"{sender} update {rnd}")
        detail = {
            "task_id": f"{upstream}-r{rnd}",
            "num_examples": 100 * max(1, len(contributors)),
            "sites": len(contributors) or 1,
            "dp": dp or {"level": "none"},
            "border": NODES[sender][1] != NODES[upstream][1],
            **({"contributors": list(contributors)} if contributors else {}),
        }
        common: dict[str, Any] = {
            "round": rnd,
            "content_sha256": sha,
            "epsilon": epsilon,
            "delta": None if epsilon is None else 1e-5,
            "decision": "accepted",
            "detail": detail,
        }
        self.ledger(sender).append(
            event="update-sent", peer=upstream, peer_jurisdiction=NODES[upstream][1], **common
        )
        if received:
            self.ledger(upstream).append(
                event="update-received",
                peer=sender,
                peer_jurisdiction=NODES[sender][1],
                **{**common, "content_sha256": received_sha or sha},
            )
        return sha

    def decline(self, node: str, rnd: int, code: str, reason: str) -> None:
        """``node`` refuses its upstream's task; both ends record it."""
        upstream = NODES[node][2]
        assert upstream is not None
        for writer, peer in ((node, upstream), (upstream, node)):
            self.ledger(writer).append(
                event="task-declined",
                round=rnd,
                peer=peer,
                peer_jurisdiction=NODES[peer][1],
                decision=code,
                detail={"reason": reason},
            )

    def close(self) -> None:
        for ledger in self.ledgers.values():
            ledger.close()


def build_run(
    run_dir: Path,
    pki: Path,
    *,
    k: int = 2,
    in_residency: str = '"IN", "EU"',
    in_sites: Sequence[str] = ("mumbai", "delhi"),
    in_dp: dict[str, Any] | None = None,
    receipt: bool = True,
    receipt_sha: str | None = None,
) -> Run:
    """Two rounds: in round 1 every site trains and both regions export; in round 2
    delhi's budget is spent, agg-in declines (below k), an intruder is refused."""
    plan = run_dir / "plan.toml"
    run_dir.mkdir(parents=True, exist_ok=True)
    plan.write_text(plan_toml(k=k, in_residency=in_residency))
    run = Run(run_dir, pki, hashlib.sha256(plan.read_bytes()).hexdigest())
    initial, models = digest("initial model"), [digest("global model 1"), digest("global model 2")]
    for site in ("paris", "berlin", "mumbai", "delhi"):
        upstream = NODES[site][2]
        assert upstream is not None
        run.ledger(site).append(
            event="model-received", round=1, peer=upstream, content_sha256=initial
        )
        run.update(site, 1, dp=SAMPLE_DP, epsilon=1.2)
        entry = PrivacyLedger(
            run_dir / "work" / site / f"{site}.privacy-ledger.jsonl",
            site=site,
            jurisdiction=NODES[site][1],
        )
        entry.record(
            dataset=f"data of {site}",
            federation=FEDERATION,
            round=1,
            task_id=f"{upstream}-r1",
            step=MechanismStep(1.5, 0.1, 10),
            delta=1e-5,
        )
    run.update("agg-eu", 1, contributors=["paris", "berlin"])
    run.update(
        "agg-in",
        1,
        contributors=list(in_sites),
        dp=in_dp or SITE_DP,
        epsilon=3.5,
        received=receipt,
        received_sha=receipt_sha,
    )
    SiteLevelLedger(
        run_dir / "nodes" / "agg-in" / "site-level-ledger.jsonl",
        region="agg-in",
        jurisdiction="IN",
        federation=FEDERATION,
    ).record(noise_multiplier=1.0, sites=len(in_sites), population=2, round=1, delta=1e-5)
    coordinator = run.ledger("coordinator")
    coordinator.append(
        event="model-published",
        round=1,
        content_sha256=models[0],
        detail={
            "parent": initial,
            "contributors": ["agg-eu", "agg-in"],
            "sites": ["paris", "berlin", *in_sites],
            "regions": ["agg-eu", "agg-in"],
            "metrics": {"accuracy": 0.81},
        },
    )
    run.decline("delhi", 2, "budget-exhausted", "round 2 would take ε to 16.1 > budget 15")
    run.decline("agg-in", 2, "below-k", "1 site of 2 needed")
    coordinator.append(
        event="policy-refused",
        round=2,
        peer="intruder",
        peer_jurisdiction="US",
        decision="admission",
        detail={"reason": "intruder is not a node of the plan"},
    )
    run.update("paris", 2, dp=SAMPLE_DP, epsilon=1.7)
    run.update("agg-eu", 2, contributors=["paris"])
    coordinator.append(
        event="model-published",
        round=2,
        content_sha256=models[1],
        detail={
            "parent": models[0],
            "contributors": ["agg-eu"],
            "sites": ["paris"],
            "regions": ["agg-eu"],
            "metrics": {"accuracy": 0.84},
        },
    )
    run.close()
    return run


@pytest.fixture
def run(tmp_path: Path, pki: Path) -> Run:
    return build_run(tmp_path / "run", pki)


def reopen(run: Run, node: str) -> AuditLedger:
    """``node``'s ledger, to append to after the run."""
    return AuditLedger.open(
        ledger_path(run.dir, node),
        signer=Signer.load(run.pki / node / f"{node}.key"),
        node=node,
        jurisdiction=NODES[node][1],
        plan_sha256=run.plan_sha256,
    )


def report_of(run: Run, **kwargs: Any) -> dict[str, Any]:
    return compliance_report(run.dir, pki=run.pki, **kwargs)


def test_the_border_crossing_is_listed_and_respects_the_plan(run: Run) -> None:
    report = report_of(run)
    assert report["ok"] is True, report["problems"]
    assert report["federation"] == FEDERATION and report["federation_source"] == "plan"
    assert report["plan"]["sha256"] == run.plan_sha256
    assert report["plan"]["recorded_by_nodes"] == {run.plan_sha256: sorted(NODES)}
    [crossing] = report["crossings"]
    assert {k: crossing[k] for k in ("round", "from", "from_jurisdiction", "to")} == {
        "round": 1,
        "from": "agg-in",
        "from_jurisdiction": "IN",
        "to": "coordinator",
    }
    assert crossing["to_jurisdiction"] == "EU"
    assert crossing["sites"] == 2 and crossing["contributors"] == ["mumbai", "delhi"]
    assert crossing["dp"] == SITE_DP and (crossing["epsilon"], crossing["delta"]) == (3.5, 1e-5)
    assert crossing["content_sha256"] == digest("agg-in update 1")
    assert crossing["sent_recorded"] is True and crossing["received_recorded"] is True
    assert crossing["rule"] == {
        "allow": True,
        "min_sites": 2,
        "site_dp": True,
        "residency": ["EU", "IN"],
    }
    assert crossing["respects_plan"] is True and crossing["violations"] == []
    summary = report["summary"]
    assert summary["only_aggregates_of_k_sites_crossed"] is True
    assert summary["min_sites_per_jurisdiction_pair"] == {"IN->EU": 2}
    assert (summary["crossings"], summary["crossings_respecting_plan"]) == (1, 1)
    assert report["nodes"] == {name: j for name, (_, j, _) in sorted(NODES.items())}
    assert report["plan_nodes_without_ledger"] == []


def test_every_ledger_is_verified_against_its_certificate(run: Run) -> None:
    report = report_of(run)
    ledgers = {e["node"]: e for e in report["ledgers"]}
    assert set(ledgers) == set(NODES)
    for name, entry in ledgers.items():
        assert entry["ok"] is True and entry["finding"] is None, entry
        assert entry["authenticated"] is True
        assert entry["jurisdiction"] == NODES[name][1]
        assert entry["records"] == len(lines_of(ledger_path(run.dir, name)))
    assert ledgers["coordinator"]["ledger"] == "audit/ledger.jsonl"
    assert ledgers["paris"]["ledger"] == "work/paris/paris.audit.jsonl"
    unauthenticated = compliance_report(run.dir, pki=run.dir / "no-pki")
    assert unauthenticated["ok"] is True
    assert not any(e["authenticated"] for e in unauthenticated["ledgers"])


def test_a_crossing_of_one_site_breaks_the_k_rule(tmp_path: Path, pki: Path) -> None:
    run = build_run(tmp_path / "run", pki, in_sites=["mumbai"])
    report = report_of(run)
    [crossing] = report["crossings"]
    assert crossing["sites"] == 1 and crossing["respects_plan"] is False
    assert crossing["violations"] == ["an aggregate of 1 site(s) crossed; IN exports need >= 2"]
    assert report["summary"]["only_aggregates_of_k_sites_crossed"] is False
    assert report["summary"]["min_sites_per_jurisdiction_pair"] == {"IN->EU": 1}
    assert report["ok"] is False
    assert report["problems"] == [
        "round 1 agg-in -> coordinator: an aggregate of 1 site(s) crossed; IN exports need >= 2"
    ]
    result = runner.invoke(app, ["report", str(run.dir), "--pki", str(pki)])
    assert result.exit_code == 1
    assert "**NOT COMPLIANT**" in result.stdout
    assert "Only aggregates of >= k sites crossed: **no**" in result.stdout


def test_a_plan_with_k_3_makes_the_same_export_non_compliant(tmp_path: Path, pki: Path) -> None:
    run = build_run(tmp_path / "run", pki, k=3)
    report = report_of(run)
    assert report["crossings"][0]["rule"]["min_sites"] == 3
    assert report["crossings"][0]["violations"] == [
        "an aggregate of 2 site(s) crossed; IN exports need >= 3"
    ]
    assert report["summary"]["only_aggregates_of_k_sites_crossed"] is False
    assert runner.invoke(app, ["report", str(run.dir)]).exit_code == 1


def test_an_export_without_site_level_dp_breaks_the_plan(tmp_path: Path, pki: Path) -> None:
    run = build_run(tmp_path / "run", pki, in_dp={"level": "none"})
    report = report_of(run)
    assert report["crossings"][0]["violations"] == [
        "IN exports need site-level DP; this update had 'none'"
    ]
    assert report["summary"]["only_aggregates_of_k_sites_crossed"] is True  # k itself is met
    assert report["ok"] is False


def test_residency_and_unknown_nodes_are_checked(tmp_path: Path, pki: Path) -> None:
    run = build_run(tmp_path / "run", pki, in_residency='"IN"')
    report = report_of(run)
    [crossing] = report["crossings"]
    assert crossing["rule"]["residency"] == ["IN"]
    assert crossing["violations"] == ["the residency of IN allows IN, not EU"]
    assert report["summary"]["only_aggregates_of_k_sites_crossed"] is True
    assert report["ok"] is False
    with reopen(run, "coordinator") as coordinator:  # a node the plan does not know
        coordinator.append(
            event="update-received",
            round=1,
            peer="rogue",
            peer_jurisdiction="US",
            content_sha256=digest("rogue update"),
            detail={"sites": 5, "dp": SITE_DP},
        )
        coordinator.append(  # nor where it is
            event="update-received", round=1, peer="ghost", content_sha256=digest("ghost")
        )
    report = report_of(run)
    assert [c["from"] for c in report["crossings"]] == ["agg-in", "ghost", "rogue"]
    ghost, rogue = report["crossings"][1:]
    assert ghost["from_jurisdiction"] is None and ghost["rule"] is None
    assert ghost["violations"] == [
        "the jurisdiction of ghost is not recorded",
        "ghost is not a node of the plan",
    ]
    assert (rogue["from"], rogue["sent_recorded"]) == ("rogue", False)
    assert rogue["violations"] == [
        "the residency of US allows US, not EU",
        "the plan lets nothing leave US",
        "rogue is not a node of the plan",
    ]


def test_another_plan_than_the_nodes_ran_is_a_problem(run: Run, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(plan_toml(k=2) + "\n# edited\n")
    report = report_of(run, plan=other)
    assert report["ok"] is False
    assert report["plan"]["path"] == str(other)
    assert report["problems"] == [
        f"{', '.join(sorted(NODES))} ran plan {run.plan_sha256}, not {other} "
        f"({report['plan']['sha256']})"
    ]


def test_a_missing_receipt_and_a_receiver_only_crossing(tmp_path: Path, pki: Path) -> None:
    run = build_run(tmp_path / "run", pki, receipt=False)
    report = report_of(run)
    assert report["crossings"][0]["received_recorded"] is False
    assert report["summary"]["crossings_not_received"] == 1
    assert report["ok"] is True  # a missing receipt is reported, not a breach of the plan
    # The coordinator recorded another hash: what was sent is not what was received.
    run = build_run(tmp_path / "run1", pki, receipt_sha=digest("something else"))
    report = report_of(run)
    assert [
        (c["content_sha256"], c["sent_recorded"], c["received_recorded"])
        for c in report["crossings"]
    ] == [(digest("agg-in update 1"), True, False), (digest("something else"), False, True)]
    # Without agg-in's ledger, the coordinator's receipt still shows what crossed.
    run = build_run(tmp_path / "run2", pki)
    ledger_path(run.dir, "agg-in").unlink()
    report = report_of(run)
    [crossing] = report["crossings"]
    assert (crossing["from"], crossing["sent_recorded"], crossing["received_recorded"]) == (
        "agg-in",
        False,
        True,
    )
    assert crossing["sites"] == 2 and crossing["respects_plan"] is True
    assert report["summary"]["crossings_not_sent"] == 1
    assert report["plan_nodes_without_ledger"] == ["agg-in"]


def test_refusals_are_listed(run: Run) -> None:
    report = report_of(run)
    refusals = [
        (r["round"], r["node"], r["event"], r["peer"], r["code"]) for r in report["refusals"]
    ]
    assert sorted(refusals) == [
        (2, "agg-in", "task-declined", "coordinator", "below-k"),
        (2, "agg-in", "task-declined", "delhi", "budget-exhausted"),
        (2, "coordinator", "policy-refused", "intruder", "admission"),
        (2, "coordinator", "task-declined", "agg-in", "below-k"),
        (2, "delhi", "task-declined", "agg-in", "budget-exhausted"),
    ]
    reasons = {r["code"]: r["reason"] for r in report["refusals"]}
    assert reasons["admission"] == "intruder is not a node of the plan"
    assert reasons["below-k"] == "1 site of 2 needed"


def test_model_versions_with_lineage_and_contributors(run: Run) -> None:
    models = report_of(run)["models"]
    assert [(m["round"], m["sha256"], m["parent"]) for m in models] == [
        (1, digest("global model 1"), digest("initial model")),
        (2, digest("global model 2"), digest("global model 1")),
    ]
    assert models[0]["contributors"] == ["agg-eu", "agg-in"]
    assert models[0]["sites"] == ["paris", "berlin", "mumbai", "delhi"]
    assert models[1]["regions"] == ["agg-eu"] and models[1]["metrics"] == {"accuracy": 0.84}
    assert {m["node"] for m in models} == {"coordinator"}


def test_privacy_spent_per_site_region_and_jurisdiction(run: Run) -> None:
    report = report_of(run)
    privacy = report["privacy"]
    expected = privacy_report(
        sorted(
            [
                *run.dir.rglob("*.privacy-ledger.jsonl"),
                run.dir / "nodes" / "agg-in" / "site-level-ledger.jsonl",
            ]
        )
    )
    # ε computed twice (the compliance report's run and this one): equal within rounding.
    assert privacy["jurisdictions"].keys() == expected["jurisdictions"].keys()
    for name, row in privacy["jurisdictions"].items():
        assert row == pytest.approx(expected["jurisdictions"][name], rel=1e-9), name
    sites = {r["site"]: r for r in privacy["sites"]}
    assert set(sites) == {"paris", "berlin", "mumbai", "delhi"}
    assert sites["delhi"]["epsilon"] == pytest.approx(
        next(r["epsilon"] for r in expected["sites"] if r["site"] == "delhi"), rel=1e-9
    )
    assert sites["delhi"]["budget"] == 15.0 and sites["delhi"]["within_budget"] is True
    assert sites["paris"]["ledger"] == "work/paris/paris.privacy-ledger.jsonl"
    [region] = privacy["regions"]
    assert (region["region"], region["jurisdiction"], region["rounds"]) == ("agg-in", "IN", 1)
    assert region["budget"] == 5000.0 and region["within_budget"] is True
    assert set(privacy["jurisdictions"]) == {"EU", "IN"}
    assert privacy["jurisdictions"]["IN"]["regions"] == 1


def test_a_tampered_ledger_is_not_ok(run: Run) -> None:
    path = ledger_path(run.dir, "agg-in")
    lines = lines_of(path)
    lines[2] = edit_byte(lines[2], "content_sha256")
    write_lines(path, lines)
    report = report_of(run)
    entry = next(e for e in report["ledgers"] if e["node"] == "agg-in")
    assert entry["ok"] is False
    assert entry["finding"].startswith("line 3 (seq 2): edited:")
    assert report["ok"] is False
    assert report["summary"]["ledgers_ok"] == len(NODES) - 1
    assert report["problems"][0].startswith(
        "ledger nodes/agg-in/audit/ledger.jsonl: line 3 (seq 2): edited"
    )
    result = runner.invoke(app, ["report", str(run.dir), "--pki", str(run.pki)])
    assert result.exit_code == 1


def test_a_cut_off_tail_is_caught_by_the_head_the_receiver_holds(run: Run) -> None:
    # The coordinator kept agg-in's ledger head with its round-1 update.
    agg_in = ledger_path(run.dir, "agg-in")
    lines = lines_of(agg_in)
    head = {"seq": len(lines) - 1, "sha256": hashlib.sha256(lines[-1].rstrip(b"\n")).hexdigest()}
    coordinator = reopen(run, "coordinator")
    coordinator.append(
        event="update-received",
        round=3,
        peer="agg-in",
        peer_jurisdiction="IN",
        content_sha256=digest("agg-in update 3"),
        detail={"sites": 2, "audit_head": head},
    )
    coordinator.close()
    intact = {e["node"]: e for e in report_of(run)["ledgers"]}["agg-in"]
    assert intact["ok"] is True and intact["checkpoints_checked"] == 1
    write_lines(agg_in, lines[:-2])
    cut = {e["node"]: e for e in report_of(run)["ledgers"]}["agg-in"]
    assert cut["ok"] is False and "truncated" in cut["finding"]


def cells(row: str) -> list[str]:
    """The cells of one Markdown table row (``\\|`` is a pipe inside a cell)."""
    assert row.startswith("|") and row.endswith("|"), row
    return [c.strip() for c in re.split(r"(?<!\\)\|", row[1:-1])]


def markdown_tables(text: str) -> dict[str, list[list[list[str]]]]:
    """heading -> its tables, each a list of rows of cells (the header row first).

    Checks the shape as it parses: a header, a ``|---|`` rule of as many columns, and
    every row with as many cells as the header.
    """
    sections: dict[str, list[list[list[str]]]] = {}
    heading = ""
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            header, rule, *body = [cells(row) for row in block]
            assert rule == ["---"] * len(header), block
            for row, raw in zip(body, block[2:], strict=True):
                assert len(row) == len(header), raw
            sections[heading].append([header, *body])
            block = []
        if line.startswith("#"):
            heading = line
            assert heading not in sections, f"{heading} twice"
            sections[heading] = []
    return sections


def test_markdown_has_the_sections_and_tables(run: Run) -> None:
    report = report_of(run)
    text = render_markdown(report)
    sections = markdown_tables(text)
    title = f"# Compliance report: {FEDERATION}"
    assert text.startswith(title + "\n")
    assert list(sections) == [
        title,
        "## Findings",
        "## Summary",
        "## Ledgers",
        "## Border crossings",
        "## Privacy spent",
        "### Per site (its ledger: ε per record, or per dataset if update-level)",
        "### Per region (site-level DP on what it exports)",
        "### Per jurisdiction (the worst site and region)",
        "## Refusals",
        "## Model versions",
    ]
    assert "\n## Findings\n\nNone: every ledger verifies" in text
    assert "Only aggregates of >= k sites crossed: yes" in text
    assert sections["## Findings"] == sections["## Privacy spent"] == []

    [head] = sections[title]
    assert head[0] == ["", ""]
    assert cells(f"| Federation | {FEDERATION} (from the plan) |") in head
    assert cells("| Result | **COMPLIANT** |") in head
    [plan] = [row for row in head if row[0] == "Plan"]
    assert plan[1].endswith(f"SHA-256 `{run.plan_sha256}`")

    [summary] = sections["## Summary"]
    assert summary == [
        cells("| from -> to | smallest aggregate (sites) |"),
        cells("| IN->EU | 2 |"),
    ]

    [ledgers] = sections["## Ledgers"]
    assert ledgers[0] == cells(
        "| node | jurisdiction | ledger | records | verified | authenticated | finding |"
    )
    nodes = ["coordinator", "agg-eu", "agg-in", "berlin", "delhi", "mumbai", "paris"]
    assert [row[0] for row in ledgers[1:]] == nodes
    assert (
        cells("| agg-in | IN | `nodes/agg-in/audit/ledger.jsonl` | 6 | yes | yes | - |") in ledgers
    )
    assert all(row[4:] == ["yes", "yes", "-"] for row in ledgers[1:])

    [crossings] = sections["## Border crossings"]
    content = report["crossings"][0]["content_sha256"][:16]
    assert crossings == [
        cells(
            "| round | from | to | sites | contributors | DP | ε | δ | content | sent recorded "
            "| received recorded | plan rule | respects plan |"
        ),
        cells(
            "| 1 | agg-in (IN) | coordinator (EU) | 2 | mumbai, delhi | site-level (z=1, "
            "clip=0.5, accountant=rdp-replace-one) | 3.500 | 1e-05 | "
            f"`{content}…` | yes | yes | >= 2 sites, site-level DP | yes |"
        ),
    ]

    privacy = report["privacy"]
    site_eps = {r["site"]: f"{r['epsilon']:.3f}" for r in privacy["sites"]}
    [region] = privacy["regions"]
    region_eps = f"{region['epsilon']:.3f}"
    [sites] = sections["### Per site (its ledger: ε per record, or per dataset if update-level)"]
    assert sites[0] == cells(
        "| site | jurisdiction | rounds | ε | unit | δ | accountant | budget | within |"
    )
    assert [row[0] for row in sites[1:]] == ["berlin", "delhi", "mumbai", "paris"]
    assert sites[2] == cells(
        f"| delhi | IN | 1 | {site_eps['delhi']} | record | 1e-05 | pld | 15 | yes |"
    )
    assert sections["### Per region (site-level DP on what it exports)"] == [
        [
            cells("| region | jurisdiction | rounds | ε | δ | budget | within |"),
            cells(f"| agg-in | IN | 1 | {region_eps} | 1e-05 | 5000 | yes |"),
        ]
    ]
    worst_in = max(site_eps["delhi"], site_eps["mumbai"], key=float)
    worst_eu = max(site_eps["paris"], site_eps["berlin"], key=float)
    assert sections["### Per jurisdiction (the worst site and region)"] == [
        [
            cells("| jurisdiction | sites | max site ε | regions | max ε (site-level) |"),
            cells(f"| EU | 2 | {worst_eu} | 0 | - |"),
            cells(f"| IN | 2 | {worst_in} | 1 | {region_eps} |"),
        ]
    ]

    [refusals] = sections["## Refusals"]
    assert refusals[0] == cells("| round | recorded by | event | peer | code | reason |")
    assert len(refusals) == 1 + 5
    assert (
        cells(
            "| 2 | coordinator (EU) | policy-refused | intruder | admission "
            "| intruder is not a node of the plan |"
        )
        in refusals
    )

    [models] = sections["## Model versions"]
    g1, g2, initial = (digest(x) for x in ("global model 1", "global model 2", "initial model"))
    assert models == [
        cells("| round | model | parent | contributors | sites | regions | metrics |"),
        cells(
            f"| 1 | `{g1}` | `{initial}` | agg-eu, agg-in | paris, berlin, mumbai, delhi "
            "| agg-eu, agg-in | accuracy=0.81 |"
        ),
        cells(f"| 2 | `{g2}` | `{g1}` | agg-eu | paris | agg-eu | accuracy=0.84 |"),
    ]


def test_json_round_trips(run: Run) -> None:
    report = report_of(run)
    assert json.loads(render_json(report)) == report
    result = runner.invoke(app, ["report", str(run.dir), "--json", "--pki", str(run.pki)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    del printed["generated"], report["generated"]
    assert printed == report


def test_unbounded_epsilon_is_json(tmp_path: Path, pki: Path) -> None:
    run = build_run(tmp_path / "run", pki)
    SiteLevelLedger(
        run.dir / "nodes" / "agg-eu" / "site-level-ledger.jsonl",
        region="agg-eu",
        jurisdiction="EU",
        federation=FEDERATION,
    ).record(noise_multiplier=0.0, sites=2, population=2, round=1, delta=1e-5)
    report = report_of(run)
    region = next(r for r in report["privacy"]["regions"] if r["region"] == "agg-eu")
    assert region["epsilon"] == "inf"
    assert json.loads(render_json(report)) == report


def test_cli_writes_out_and_is_registered_under_fedsov_audit(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    result = runner.invoke(
        fedsov_app, ["audit", "report", str(run.dir), "--out", str(out), "--pki", str(run.pki)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: compliant" in " ".join(result.output.split())
    assert out.read_text().startswith(f"# Compliance report: {FEDERATION}\n")
    as_json = tmp_path / "report.json"
    result = runner.invoke(app, ["report", str(run.dir), "--json", "--out", str(as_json)])
    assert result.exit_code == 0, result.output
    assert json.loads(as_json.read_text())["crossings"][0]["from"] == "agg-in"


def test_without_a_plan_the_federation_comes_from_the_ledgers(run: Run) -> None:
    (run.dir / "plan.toml").unlink()
    report = report_of(run)
    assert report["federation"] == FEDERATION
    assert report["federation_source"] == "privacy ledgers"
    assert report["plan"] == {
        "path": None,
        "sha256": run.plan_sha256,
        "recorded_by_nodes": {run.plan_sha256: sorted(NODES)},
    }
    [crossing] = report["crossings"]
    assert crossing["rule"] is None and crossing["respects_plan"] is None
    assert report["summary"]["only_aggregates_of_k_sites_crossed"] is None
    assert "No plan was found" in render_markdown(report)


def test_bad_input_exits_2(tmp_path: Path, run: Run) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 2
    assert "error:" in result.output and "no audit ledgers found" in result.output
    assert str(empty) in " ".join(result.output.split())
    missing = runner.invoke(app, ["report", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "not a directory" in missing.output
    no_plan = runner.invoke(app, ["report", str(run.dir), "--plan", str(tmp_path / "x.toml")])
    assert no_plan.exit_code == 2 and "x.toml" in no_plan.output


def test_a_node_in_the_insecure_reproducible_mode_makes_the_run_non_compliant(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = run.pki / "agg-in"
    tls = load_tls_material(cert=node / "agg-in.pem", key=node / "agg-in.key", ca=node / "ca.pem")
    path = ledger_path(run.dir, "agg-in")
    monkeypatch.delenv(REPRODUCIBLE_ENV, raising=False)
    AuditTrail.open(path, tls, plan_sha256=run.plan_sha256).close()  # a normal start: nothing
    assert report_of(run)["ok"] is True
    monkeypatch.setenv(REPRODUCIBLE_ENV, "1")
    for _ in range(2):  # once per start
        AuditTrail.open(path, tls, plan_sha256=run.plan_sha256).close()
    flagged = [r for r in read_ledger(path) if r.event == "insecure-reproducible-mode"]
    assert len(flagged) == 2 and flagged[0].detail["env"] == REPRODUCIBLE_ENV
    report = report_of(run)
    assert report["ok"] is False
    assert report["insecure_reproducible_nodes"] == ["agg-in"]
    assert report["problems"] == [
        f"agg-in ran in the insecure reproducible mode ({REPRODUCIBLE_ENV}=1): its DP "
        "randomness came from public seeds, so its privacy guarantee does not hold"
    ]
    assert "agg-in ran in the insecure reproducible mode" in render_markdown(report)
    result = runner.invoke(app, ["report", str(run.dir), "--pki", str(run.pki)])
    assert result.exit_code == 1
