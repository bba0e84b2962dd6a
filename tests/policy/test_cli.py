"""``fedsov policy check``: exit codes 0/1/2, the table, the summary line and --json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from fedsov.cli.policy import app

ROOT = Path(__file__).resolve().parents[2]
CONSORTIUM = ROOT / "simulations" / "consortium.toml"
CYCLE = ROOT / "simulations" / "violations" / "cycle.toml"
runner = CliRunner()


def test_a_valid_plan_prints_ok_hash_and_topology() -> None:
    result = runner.invoke(app, ["check", str(CONSORTIUM)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "plan OK" in out
    assert hashlib.sha256(CONSORTIUM.read_bytes()).hexdigest() in out
    assert "1 global, 3 regional, 10 edge across EU, IN, US" in out


def test_violations_print_a_table_and_exit_1() -> None:
    result = runner.invoke(app, ["check", str(CYCLE)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "1 violation(s)" in out
    assert "│ agg-eu │ cycle │ agg-eu -> agg-in -> agg-eu loops │" in out
    assert "plan OK" not in out


def test_json_report_shape() -> None:
    ok = runner.invoke(app, ["check", "--json", str(CONSORTIUM)])
    assert ok.exit_code == 0
    assert json.loads(ok.output) == {
        "plan_sha256": hashlib.sha256(CONSORTIUM.read_bytes()).hexdigest(),
        "ok": True,
        "violations": [],
    }
    bad = runner.invoke(app, ["check", str(CYCLE), "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert report["ok"] is False
    assert report["plan_sha256"] == hashlib.sha256(CYCLE.read_bytes()).hexdigest()
    assert [set(v) for v in report["violations"]] == [{"node", "rule", "reason"}]
    assert report["violations"][0]["rule"] == "cycle"


def test_a_plan_that_cannot_load_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    result = runner.invoke(app, ["check", str(missing)])
    assert result.exit_code == 2
    assert "cannot read plan" in result.output and "none.toml" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text(CONSORTIUM.read_text().replace('tier = "edge"', 'tier = "leaf"', 1))
    result = runner.invoke(app, ["check", "--json", str(bad)])
    assert result.exit_code == 2
    out = "".join(result.output.split())
    assert "nodes[4].tier" in out and "bad.toml" in out
