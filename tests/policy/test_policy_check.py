"""The federation plan and `fedsov policy check`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsov.exceptions import ConfigError
from fedsov.policy import Tier, check_plan, load_plan
from fedsov.policy.cli import app

ROOT = Path(__file__).resolve().parents[2]
CONSORTIUM = ROOT / "simulations" / "consortium.toml"
VIOLATIONS = sorted((ROOT / "simulations" / "violations").glob("*.toml"))


def test_consortium_plan_is_valid_and_hierarchical() -> None:
    plan = load_plan(CONSORTIUM)
    assert check_plan(plan) == []
    assert {n.jurisdiction for n in plan.nodes} >= {"EU", "IN", "US"}
    assert sum(n.tier is Tier.REGIONAL for n in plan.nodes) >= 2
    assert sum(n.tier is Tier.EDGE for n in plan.nodes) >= 9
    assert {n.name for n in plan.edges_under("agg-in")} == {"mumbai", "delhi", "chennai"}
    assert plan.may_send("mumbai")[0] and plan.may_send("agg-in")[0]
    assert plan.export_rule("IN").min_sites == 3 and plan.export_rule("IN").site_dp
    assert not plan.export_rule("EU").allow  # no rule: nothing leaves


@pytest.mark.parametrize("path", VIOLATIONS, ids=[p.stem for p in VIOLATIONS])
def test_each_violation_scenario_is_rejected_for_its_rule(path: Path) -> None:
    violations = check_plan(load_plan(path))
    assert path.stem in {v.rule for v in violations}, violations
    assert all(v.reason for v in violations)


def test_violation_scenarios_cover_every_rule() -> None:
    from fedsov.policy import check

    documented = {
        line.split("``")[1]
        for line in (check.__doc__ or "").splitlines()
        if line.startswith("- ``")
    }
    assert documented == {p.stem for p in VIOLATIONS}


def test_plan_sha256_pins_the_exact_bytes(tmp_path: Path) -> None:
    copy = tmp_path / "plan.toml"
    copy.write_bytes(CONSORTIUM.read_bytes())
    assert load_plan(copy).sha256 == load_plan(CONSORTIUM).sha256
    copy.write_bytes(CONSORTIUM.read_bytes() + b"\n")
    assert load_plan(copy).sha256 != load_plan(CONSORTIUM).sha256


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('tier = "edge"', 'tier = "leaf"', 1), r"nodes\[4\]\.tier: 'leaf' is not one of"),
        (('name = "berlin"', 'name = "paris"', 1), "node 'paris' is declared twice"),
        (('jurisdiction = "US"', 'jurisdiction = "usa"', 1), r"nodes\[3\]\.jurisdiction"),
        (("[policy.budgets]", "[policy.budget]", 1), r"\[policy\]: unknown key 'budget'"),
    ],
)
def test_plan_errors_name_file_and_key(
    tmp_path: Path, edit: tuple[str, str, int], message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(CONSORTIUM.read_text().replace(*edit))
    with pytest.raises(ConfigError, match=message) as info:
        load_plan(path)
    assert str(path) in str(info.value)


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(CONSORTIUM)])
    assert ok.exit_code == 0 and "plan OK" in ok.output and "3 regional, 10 edge" in ok.output
    bad = runner.invoke(app, ["check", "--json", str(VIOLATIONS[0])])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert report["ok"] is False and report["violations"][0]["rule"] == VIOLATIONS[0].stem
    missing = runner.invoke(app, ["check", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2
