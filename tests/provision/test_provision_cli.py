"""``fedsov provision`` on the command line: what it prints, and its errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from fedsov.cli.provision import provision_cmd

app = typer.Typer()
app.command()(provision_cmd)
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_it_lists_the_kits_and_warns_about_the_ca_it_made(plan_file: Path, tmp_path: Path) -> None:
    code, out = run(str(plan_file), "--out", str(tmp_path / "kits"))
    assert code == 0, out
    assert "agg-eu (aggregator, EU): listens 0.0.0.0:7444" in out
    assert "paris (site, EU): dials agg-eu:7444" in out
    assert "8 kits written" in out
    assert "WARNING: provision made a new federation CA" in out
    assert "never ship it in a kit" in out


def test_a_plan_that_breaks_its_policy_exits_2_saying_what_to_fix(
    plan_file: Path, tmp_path: Path
) -> None:
    plan_file.write_text(plan_file.read_text().replace('upstream = "agg-in"', 'upstream = "x"'))
    code, out = run(str(plan_file), "--out", str(tmp_path / "kits"))
    assert code == 2
    assert "breaks its own policy" in out and "unknown-upstream" in out
    assert "fedsov policy check" in out
    assert not (tmp_path / "kits").exists()


def test_bad_options_exit_2_naming_them(plan_file: Path, tmp_path: Path) -> None:
    kits = str(tmp_path / "kits")
    code, out = run(str(plan_file), "--out", kits, "--port", "agg-eu=http")
    assert (code, "--port agg-eu=http: the port must be a number" in out) == (2, True)
    code, out = run(str(plan_file), "--out", kits, "--host", "coordinator")
    assert (code, "expected NODE=VALUE" in out) == (2, True)
    code, out = run(str(tmp_path / "missing.toml"), "--out", kits)
    assert (code, "missing.toml" in out) == (2, True)


def test_demo_data_needs_the_plans_simulation_table(plan_file: Path, tmp_path: Path) -> None:
    text = plan_file.read_text()
    plan_file.write_text(text[: text.index("[simulation]")])
    code, out = run(str(plan_file), "--out", str(tmp_path / "kits"), "--demo-data")
    assert code == 2
    assert "--demo-data needs the plan's [simulation] table" in out


def test_a_kit_with_a_key_exits_2_pointing_at_force(plan_file: Path, tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    assert run(str(plan_file), "--out", str(kits))[0] == 0
    (kits / "berlin" / "berlin.key").write_text("a key made on berlin")
    code, out = run(str(plan_file), "--out", str(kits))
    assert code == 2 and "berlin/berlin.key" in out and "--force" in out
    code, out = run(str(plan_file), "--out", str(kits), "--force")
    assert code == 0, out
    assert "provision used the federation CA" in out
    assert (kits / "berlin" / "berlin.key").read_text() == "a key made on berlin"
