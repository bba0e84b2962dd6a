"""``fedsov privacy report`` lists every site of the plan: one that never released
anything (no ledger file, or an empty one) appears with ε 0, and so it does in the
compliance report of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsov.audit import AuditLedger
from fedsov.audit.signing import Signer
from fedsov.cli import app
from fedsov.pki._keys import generate_key
from fedsov.policy.compliance import compliance_report, render_markdown
from fedsov.privacy.accountant import MechanismStep
from fedsov.privacy.ledger import PrivacyLedger
from fedsov.privacy.report import privacy_report

PLAN = """\
[federation]
name = "few"

[model]
factory = "fedsov.simulation.models:logistic"

[rounds]
num_rounds = 2

[[nodes]]
name = "hub"
tier = "global"
jurisdiction = "EU"

[[node_groups]]
prefix = "eu"
count = 3
tier = "edge"
jurisdiction = "EU"
upstream = "hub"

[[node_groups]]
prefix = "us"
count = 2
tier = "edge"
jurisdiction = "US"
upstream = "hub"
"""


def ledger(folder: Path, site: str, jurisdiction: str, rounds: int) -> Path:
    path = folder / f"{site}.privacy-ledger.jsonl"
    book = PrivacyLedger(path, site=site, jurisdiction=jurisdiction)
    for r in range(1, rounds + 1):
        book.record(
            dataset="d-" + site,
            federation="few",
            round=r,
            task_id=f"t{r}",
            step=MechanismStep(1.5, 0.25, 4),
            delta=1e-5,
        )
    return path


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run folder: its plan, two sites that released, one empty ledger, two none."""
    (tmp_path / "plan.toml").write_text(PLAN)
    configs = tmp_path / "configs"
    configs.mkdir()
    ledger(configs, "eu-1", "EU", 2)
    ledger(configs, "us-2", "US", 1)
    (configs / "eu-2.privacy-ledger.jsonl").touch()  # opened, never released
    return tmp_path


def by_site(report: dict[str, object]) -> dict[str, dict[str, object]]:
    return {row["site"]: row for row in report["sites"]}  # type: ignore[attr-defined]


def test_expected_sites_without_a_release_are_listed_with_epsilon_zero(run: Path) -> None:
    ledgers = sorted((run / "configs").glob("*.jsonl"))
    report = privacy_report(
        ledgers,
        expected_sites={"eu-1": "EU", "eu-2": "EU", "eu-3": "EU", "us-1": "US", "us-2": "US"},
        federation="few",
    )
    rows = by_site(report)
    assert list(rows) == ["eu-1", "us-2", "eu-2", "eu-3", "us-1"]  # released first
    for silent in ("eu-2", "eu-3", "us-1"):
        row = rows[silent]
        assert (row["epsilon"], row["delta"], row["rounds"], row["steps"]) == (0.0, 0.0, 0, 0)
        assert row["ledger"] is None and row["federation"] == "few"
    assert rows["eu-1"]["rounds"] == 2 and rows["eu-1"]["epsilon"] > 0  # type: ignore[operator]
    assert report["jurisdictions"]["EU"]["sites"] == 3  # type: ignore[index]
    assert report["jurisdictions"]["US"]["sites"] == 2  # type: ignore[index]
    assert report["federations"]["few"]["sites"] == 5  # type: ignore[index]


def test_without_expected_sites_only_releases_are_listed(run: Path) -> None:
    report = privacy_report(sorted((run / "configs").glob("*.jsonl")))
    assert sorted(by_site(report)) == ["eu-1", "us-2"]


def test_the_cli_reads_a_run_folder_and_its_plan(run: Path) -> None:
    result = CliRunner().invoke(app, ["privacy", "report", str(run), "--json"])
    assert result.exit_code == 0, result.output
    rows = by_site(json.loads(result.output))
    assert sorted(rows) == ["eu-1", "eu-2", "eu-3", "us-1", "us-2"]
    assert rows["us-1"]["epsilon"] == 0.0


def test_the_cli_takes_the_plan_beside_ledgers(run: Path) -> None:
    ledgers = [str(p) for p in sorted((run / "configs").glob("*.jsonl"))]
    args = ["privacy", "report", *ledgers, "--plan", str(run / "plan.toml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 site(s) of the plan released nothing: ε 0" in result.output
    assert "jurisdiction EU: 3 sites" in result.output
    without = CliRunner().invoke(app, ["privacy", "report", *ledgers])
    assert without.exit_code == 0 and "released nothing" not in without.output


def test_a_folder_without_ledgers_or_plan_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["privacy", "report", str(tmp_path)])
    assert result.exit_code != 0
    assert "no privacy ledger found" in result.output


@pytest.mark.parametrize("markdown", [False, True])
def test_the_compliance_report_lists_sites_that_released_nothing(run: Path, markdown: bool) -> None:
    hub = AuditLedger.open(
        run / "audit" / "ledger.jsonl", signer=Signer(generate_key()), node="hub", jurisdiction="EU"
    )
    hub.append(event="model-received", round=1, peer="hub", content_sha256="ab" * 32)
    hub.close()
    report = compliance_report(run)
    rows = {r["site"]: r for r in report["privacy"]["sites"]}
    assert sorted(rows) == ["eu-1", "eu-2", "eu-3", "us-1", "us-2"]
    assert rows["eu-1"]["ledger"] == "configs/eu-1.privacy-ledger.jsonl"
    assert rows["eu-3"]["ledger"] is None and rows["eu-3"]["epsilon"] == 0.0
    assert rows["eu-3"]["within_budget"] is None  # the plan sets no site budget
    if markdown:
        assert "| eu-3 | EU | 0 |" in render_markdown(report)
