"""``fedsov audit report`` and secure aggregation: which border crossings were secure
aggregates, each node's secure rounds, and NOT COMPLIANT where the plan's
``[policy.secure_aggregation]`` required one that the ledgers do not show.

The run: agg-in (IN: pune, delhi, chennai) and agg-us (US: boston, austin) export to
the coordinator in the EU, agg-eu (EU: paris, berlin) sends it its aggregate without
crossing a border, and zurich (CH) sends its own update to the coordinator directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fedsov.audit import AuditLedger, Signer
from fedsov.audit.trail import AuditTrail
from fedsov.pki._keys import generate_key
from fedsov.policy.compliance import compliance_report, render_json, render_markdown

NODES: dict[str, tuple[str, str, str | None]] = {  # tier, jurisdiction, upstream
    "coordinator": ("global", "EU", None),
    "agg-eu": ("regional", "EU", "coordinator"),
    "agg-in": ("regional", "IN", "coordinator"),
    "agg-us": ("regional", "US", "coordinator"),
    "paris": ("edge", "EU", "agg-eu"),
    "berlin": ("edge", "EU", "agg-eu"),
    "pune": ("edge", "IN", "agg-in"),
    "delhi": ("edge", "IN", "agg-in"),
    "chennai": ("edge", "IN", "agg-in"),
    "boston": ("edge", "US", "agg-us"),
    "austin": ("edge", "US", "agg-us"),
    "zurich": ("edge", "CH", "coordinator"),
}
SITES = {
    "agg-eu": ["paris", "berlin"],
    "agg-in": ["pune", "delhi", "chennai"],
    "agg-us": ["boston", "austin"],
}


def plan_toml(secure: str) -> str:
    nodes = "\n".join(
        f'[[nodes]]\nname = "{name}"\ntier = "{tier}"\njurisdiction = "{j}"\n'
        + (f'upstream = "{up}"\n' if up else "")
        for name, (tier, j, up) in NODES.items()
    )
    return f"""[federation]
name = "secure-fed"

[model]
factory = "fedsov.simulation.models:mlp"

[rounds]
num_rounds = 2

{nodes}
[policy.residency]
IN = ["IN", "EU"]
US = ["US", "EU"]
CH = ["CH", "EU"]

[policy.export]
IN = {{ min_sites = 2 }}
US = {{ min_sites = 2 }}
CH = {{ min_sites = 1 }}

[policy.budgets]
jurisdiction_epsilon = {{ IN = 10.0, US = 10.0, CH = 10.0 }}
{secure}"""


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Run:
    dir: Path
    plan_sha256: str
    ledgers: dict[str, AuditLedger] = field(default_factory=dict)

    def ledger(self, node: str) -> AuditLedger:
        if node not in self.ledgers:
            tier = NODES[node][0]
            path = {
                "global": self.dir / "audit" / "ledger.jsonl",
                "regional": self.dir / "nodes" / node / "audit" / "ledger.jsonl",
            }.get(tier, self.dir / "work" / node / f"{node}.audit.jsonl")
            self.ledgers[node] = AuditLedger.open(
                path,
                signer=Signer(generate_key()),
                node=node,
                jurisdiction=NODES[node][1],
                plan_sha256=self.plan_sha256,
            )
        return self.ledgers[node]

    def send(self, sender: str, rnd: int, contributors: Sequence[str] = ()) -> None:
        """``sender``'s round-``rnd`` update, sent and received."""
        upstream = NODES[sender][2]
        assert upstream is not None
        common: dict[str, Any] = {
            "round": rnd,
            "content_sha256": digest(f"{sender} {rnd}"),
            "decision": "accepted",
            "detail": {
                "sites": len(contributors) or 1,
                "dp": {"level": "none"},
                "border": NODES[sender][1] != NODES[upstream][1],
                **({"contributors": list(contributors)} if contributors else {}),
            },
        }
        j = NODES[upstream][1]
        self.ledger(sender).append(
            event="update-sent", peer=upstream, peer_jurisdiction=j, **common
        )
        self.ledger(upstream).append(
            event="update-received", peer=sender, peer_jurisdiction=NODES[sender][1], **common
        )

    def secure(
        self,
        node: str,
        rnd: int,
        survivors: Sequence[str],
        *,
        dropped: Sequence[str] = (),
        threshold: int = 2,
        failure: str = "",
    ) -> None:
        """``node``'s secure round, as the engine records it."""
        AuditTrail(self.ledger(node)).secure_aggregate(
            round=rnd,
            protocol="secagg+",
            threshold=threshold,
            neighbours=2,
            ring_bits=40,
            survivors=survivors,
            dropped=dropped,
            failure=failure,
        )

    def regions(self, rnd: int, *, secure: Sequence[str]) -> None:
        """Round ``rnd``: every region aggregates its sites (securely: those in ``secure``)
        and sends the aggregate up; zurich sends its own update."""
        for agg, sites in SITES.items():
            for site in sites:
                self.send(site, rnd)
            if agg in secure:
                self.secure(agg, rnd, sites)
            self.send(agg, rnd, sites)
        self.send("zurich", rnd)

    def close(self) -> dict[str, Any]:
        for ledger in self.ledgers.values():
            ledger.close()
        return compliance_report(self.dir)


def start(tmp_path: Path, secure: str = "") -> Run:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plan = run_dir / "plan.toml"
    plan.write_text(plan_toml(secure))
    return Run(run_dir, hashlib.sha256(plan.read_bytes()).hexdigest())


def crossing_of(report: dict[str, Any], sender: str, rnd: int = 1) -> dict[str, Any]:
    [c] = [c for c in report["crossings"] if (c["from"], c["round"]) == (sender, rnd)]
    return c


def crossings_table(text: str) -> list[list[str]]:
    part = text.split("## Border crossings\n\n", 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in part.splitlines()]


def test_a_secure_aggregate_is_marked_and_summarised(tmp_path: Path) -> None:
    run = start(tmp_path, '\n[policy.secure_aggregation]\njurisdictions = ["IN"]\n')
    run.regions(1, secure=["agg-in"])
    run.secure("agg-in", 2, ["pune", "delhi"], dropped=["chennai"])  # chennai dropped out
    for site in ("pune", "delhi"):
        run.send(site, 2)
    run.send("agg-in", 2, ["pune", "delhi"])
    report = run.close()

    assert report["ok"] is True, report["problems"]
    assert crossing_of(report, "agg-in")["secure_aggregate"] is True
    assert crossing_of(report, "agg-in", 2)["secure_aggregate"] is True
    assert crossing_of(report, "agg-us")["secure_aggregate"] is False  # not required of US
    assert crossing_of(report, "agg-us")["respects_plan"] is True
    assert crossing_of(report, "zurich")["secure_aggregate"] is False
    [agg_in] = report["secure_aggregation"]
    assert agg_in == {
        "node": "agg-in",
        "jurisdiction": "IN",
        "required_threshold": 2,
        "rounds": [
            {
                "round": 1,
                "protocol": "secagg+",
                "threshold": 2,
                "neighbours": 2,
                "survivors": 3,
                "dropped": 0,
                "completed": True,
                "failure": None,
            },
            {
                "round": 2,
                "protocol": "secagg+",
                "threshold": 2,
                "neighbours": 2,
                "survivors": 2,
                "dropped": 1,
                "completed": True,
                "failure": None,
            },
        ],
        "rounds_not_secure": [],
    }
    assert "pune" not in render_json(report["secure_aggregation"])  # counts, never who or keys

    text = render_markdown(report)
    assert "| Result | **COMPLIANT** |" in text
    table = crossings_table(text)
    column = table[0].index("secure aggregate")
    assert table[0][column - 1] == "received recorded" and table[0][column + 1] == "plan rule"
    secure = {(row[0], row[1].split()[0]): row[column] for row in table[2:]}
    assert secure == {
        ("1", "agg-in"): "yes",
        ("1", "agg-us"): "**no**",
        ("1", "zurich"): "**no**",
        ("2", "agg-in"): "yes",
    }
    assert "- Secure aggregates: 2 of 4 border crossings" in text
    assert (
        "## Secure aggregation\n\n- agg-in (IN; the plan requires threshold >= 2): secagg+, "
        "threshold 2; round 1: 3 survivors; round 2: 2 survivors, 1 dropped\n"
    ) in text


def test_a_required_secure_aggregate_that_is_missing_is_non_compliant(tmp_path: Path) -> None:
    run = start(tmp_path, '\n[policy.secure_aggregation]\njurisdictions = ["IN", "US"]\n')
    run.regions(1, secure=["agg-in"])
    report = run.close()

    assert report["ok"] is False
    agg_us = crossing_of(report, "agg-us")
    assert (agg_us["secure_aggregate"], agg_us["respects_plan"]) == (False, False)
    expected = (
        "the plan requires agg-us to securely aggregate (threshold >= 2), but agg-us's "
        "ledger records no completed secure aggregate of this round"
    )
    assert agg_us["violations"] == [expected]
    assert f"round 1 agg-us -> coordinator: {expected}" in report["problems"]
    assert crossing_of(report, "agg-in")["respects_plan"] is True
    by_node = {n["node"]: n for n in report["secure_aggregation"]}
    assert by_node["agg-us"]["rounds"] == [] and by_node["agg-us"]["rounds_not_secure"] == [1]
    assert by_node["agg-in"]["rounds_not_secure"] == []

    text = render_markdown(report)
    assert "| Result | **NOT COMPLIANT** |" in text
    table = crossings_table(text)
    [row] = [r for r in table[2:] if r[1].startswith("agg-us")]
    column = table[0].index("secure aggregate")
    assert (row[column], row[-1]) == ("**no**", "**no**")
    assert f"- Round 1, agg-us -> coordinator: {expected}" in text
    assert (
        "- agg-us (US; the plan requires threshold >= 2): no secure aggregate recorded; "
        "**not a secure aggregate** in round(s) 1"
    ) in text


def test_a_failed_or_weaker_secure_round_does_not_count(tmp_path: Path) -> None:
    run = start(tmp_path, '\n[policy.secure_aggregation]\nnodes = ["agg-in"]\nthreshold = 3\n')
    run.secure("agg-in", 1, ["pune", "delhi"], dropped=["chennai"], failure="too few survivors")
    run.send("agg-in", 1, ["pune", "delhi", "chennai"])  # sent anyway: not a secure aggregate
    run.secure("agg-in", 2, ["pune", "delhi", "chennai"], threshold=2)
    run.send("agg-in", 2, ["pune", "delhi", "chennai"])
    report = run.close()

    first, second = crossing_of(report, "agg-in"), crossing_of(report, "agg-in", 2)
    assert first["secure_aggregate"] is False and first["respects_plan"] is False
    assert second["secure_aggregate"] is True and second["respects_plan"] is False
    assert second["violations"] == [
        "the plan requires agg-in to securely aggregate (threshold >= 3), but the round's "
        "secure aggregate had threshold 2"
    ]
    [agg_in] = report["secure_aggregation"]
    assert agg_in["rounds_not_secure"] == [1, 2]
    assert agg_in["rounds"][0]["completed"] is False
    assert agg_in["rounds"][0]["failure"] == "too few survivors"
    assert "round 1: failed (too few survivors); round 2: 3 survivors" in render_markdown(report)


def test_an_aggregate_that_stays_home_is_judged_too(tmp_path: Path) -> None:
    run = start(tmp_path, '\n[policy.secure_aggregation]\njurisdictions = ["EU"]\n')
    run.regions(1, secure=[])  # agg-eu -> coordinator: EU to EU, no border crossed
    report = run.close()

    assert all(c["from"] != "agg-eu" for c in report["crossings"])
    assert report["ok"] is False
    assert (
        "round 1 agg-eu -> coordinator: the plan requires agg-eu to securely aggregate "
        "(threshold >= 2), but agg-eu's ledger records no completed secure aggregate of "
        "this round"
    ) in report["problems"]
    # the coordinator serves zurich directly, so EU binds it: it published nothing here
    by_node = {n["node"]: n for n in report["secure_aggregation"]}
    assert set(by_node) == {"agg-eu", "coordinator"}
    assert by_node["coordinator"]["rounds_not_secure"] == []
    # zurich's own update crossed to the coordinator, which summed nothing securely
    assert crossing_of(report, "zurich")["respects_plan"] is False


def test_a_sites_own_update_is_secure_when_its_upstream_summed_it(tmp_path: Path) -> None:
    run = start(tmp_path, '\n[policy.secure_aggregation]\nnodes = ["coordinator"]\n')
    run.send("zurich", 1)
    run.send("zurich", 2)
    run.secure("coordinator", 1, ["zurich", "agg-eu"])  # the sum zurich's mask is in
    run.secure("coordinator", 2, ["agg-eu", "agg-in"], dropped=["zurich"])
    report = run.close()

    one, two = crossing_of(report, "zurich"), crossing_of(report, "zurich", 2)
    assert (one["secure_aggregate"], one["respects_plan"]) == (True, True)
    assert (two["secure_aggregate"], two["respects_plan"]) == (False, False)
    assert two["violations"][0].startswith("the plan requires coordinator to securely aggregate")


def test_without_secure_aggregation_the_report_is_as_before(tmp_path: Path) -> None:
    run = start(tmp_path)
    run.regions(1, secure=[])
    report = run.close()

    assert report["ok"] is True, report["problems"]
    assert report["secure_aggregation"] == []
    assert {c["secure_aggregate"] for c in report["crossings"]} == {False}
    text = render_markdown(report)
    assert "secure aggregate" not in text.lower()


@pytest.mark.parametrize("missing", ["agg-in", "coordinator"])
def test_a_missing_ledger_leaves_it_unknown(tmp_path: Path, missing: str) -> None:
    run = start(tmp_path, '\n[policy.secure_aggregation]\nnodes = ["agg-in", "coordinator"]\n')
    run.secure("agg-in", 1, SITES["agg-in"])
    run.send("agg-in", 1, SITES["agg-in"])
    run.send("zurich", 1)
    for ledger in run.ledgers.values():
        ledger.close()
    ledger_of = {
        "agg-in": run.dir / "nodes" / "agg-in" / "audit" / "ledger.jsonl",
        "coordinator": run.dir / "audit" / "ledger.jsonl",
    }
    ledger_of[missing].unlink()
    report = compliance_report(run.dir)

    sender = "agg-in" if missing == "agg-in" else "zurich"  # whose secure sum is unrecorded
    c = crossing_of(report, sender)
    assert c["secure_aggregate"] is None and c["respects_plan"] is False
    assert c["violations"][-1].endswith(f"({missing}'s ledger is missing)")
    [row] = [r for r in crossings_table(render_markdown(report))[2:] if r[1].startswith(sender)]
    assert "unknown" in row
