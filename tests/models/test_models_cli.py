"""``fedsov models list | show | export``: text, --json, and exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import PLAN_SHA, Federation, build
from typer.testing import CliRunner

from fedsov.cli.models import app

runner = CliRunner()


def flat(output: str) -> str:
    return " ".join(output.split())


def test_list_shows_a_row_per_model(federation: Federation) -> None:
    result = runner.invoke(app, ["list", str(federation.out)])
    assert result.exit_code == 0, result.output
    lines = [flat(line) for line in result.output.splitlines()]
    header = next(line for line in lines if line.startswith("round"))
    assert header == "round sha256 parent contributors sites accuracy"
    rows = [line for line in lines if line[:1].isdigit()]
    sha = [federation.sha(r)[:16] for r in range(4)]
    assert rows == [
        f"0 {sha[0]} - 0 0 -",
        f"1 {sha[1]} {sha[0]} 2 3 0.6100",
        f"2 {sha[2]} {sha[1]} 1 0 0.7000",
        f"3 {sha[3]} {sha[2]} 2 3 0.8300",
    ]


def test_list_json_has_every_field_of_every_row(federation: Federation) -> None:
    result = runner.invoke(app, ["list", str(federation.out), "--json"])
    assert result.exit_code == 0, result.output
    models = json.loads(result.output)
    assert [(m["round"], m["sha256"]) for m in models] == [(r, federation.sha(r)) for r in range(4)]
    assert models[1] == {
        "sha256": federation.sha(1),
        "round": 1,
        "parent": federation.sha(0),
        "file": f"blobs/{federation.sha(1)}.safetensors",
        "contributors": ["agg-eu", "site-us-1"],
        "sites": ["site-eu-1", "site-eu-2", "site-us-1"],
        "regions": ["agg-eu"],
        "epsilon": {"site-eu-1": 0.5, "site-eu-2": 0.75, "site-us-1": 1.0},
        "site_level_epsilon": {"agg-eu": 0.25},
        "metrics": {"accuracy": 0.61, "loss": 1.39},
        "plan_sha256": PLAN_SHA,
        "created": "2025-01-02T12:00:00+00:00",
        "extra": {},
    }
    assert models[2]["sites"] == [] and models[2]["plan_sha256"] is None


def test_show_prints_the_row_and_its_lineage(federation: Federation) -> None:
    result = runner.invoke(app, ["show", str(federation.out), federation.sha(3)[:8]])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"model               {federation.sha(3)}\n" in out
    assert f"parent              {federation.sha(2)}\n" in out
    assert "sites               site-eu-1, site-eu-2, site-us-1\n" in out
    assert "ε (sample-level)    site-eu-1=1.5, site-eu-2=2.25, site-us-1=3\n" in out
    assert "ε (site-level)      agg-eu=0.75\n" in out
    assert "metrics             accuracy=0.83, loss=1.17\n" in out
    assert f"plan                {PLAN_SHA}\n" in out
    chain = " <- ".join(f"round {r} {federation.sha(r)[:16]}" for r in (3, 2, 1, 0))
    assert f"lineage             {chain}\n" in out


def test_show_json_adds_the_lineage(federation: Federation) -> None:
    result = runner.invoke(app, ["show", str(federation.out), "latest", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["sha256"] == federation.sha(3)
    assert shown["site_level_epsilon"] == {"agg-eu": 0.75}
    assert shown["lineage"] == [{"round": r, "sha256": federation.sha(r)} for r in (3, 2, 1, 0)]


def test_show_of_the_initial_model(federation: Federation) -> None:
    result = runner.invoke(app, ["show", str(federation.out), "0"])
    assert result.exit_code == 0, result.output
    assert "parent              - (initial model)\n" in result.output
    assert f"lineage             round 0 {federation.sha(0)[:16]}\n" in result.output


@pytest.mark.parametrize(
    ("ref", "message"),
    [("9", "no round 9 (models of rounds 0 to 3)"), ("abc", "'abc' names no model")],
)
def test_show_of_no_such_model_exits_2(federation: Federation, ref: str, message: str) -> None:
    result = runner.invoke(app, ["show", str(federation.out), ref])
    assert result.exit_code == 2
    assert "error:" in result.output and message in flat(result.output)


def test_export_both_formats(federation: Federation, tmp_path: Path) -> None:
    dest = tmp_path / "latest.safetensors"
    result = runner.invoke(app, ["export", str(federation.out), "latest", "--out", str(dest)])
    assert result.exit_code == 0, result.output
    assert (
        f"round 3 ({federation.sha(3)[:16]})" in result.output and "as safetensors" in result.output
    )
    assert dest.read_bytes() == federation.blob(3).read_bytes()
    dest = tmp_path / "round1.weights"
    args = ["export", str(federation.out), "1", "--out", str(dest), "--format", "torch"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    build().load_state_dict(torch.load(dest, weights_only=True), strict=True)


def test_export_refuses_an_unknown_format(federation: Federation, tmp_path: Path) -> None:
    args = ["export", str(federation.out), "1", "--out", str(tmp_path / "m"), "--format", "onnx"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "'onnx' is not one of 'safetensors', 'torch'" in flat(result.output)


def test_export_of_a_tampered_blob_exits_2_naming_the_file(
    federation: Federation, tmp_path: Path
) -> None:
    blob = bytearray(federation.blob(3).read_bytes())
    blob[-5] ^= 0x01
    federation.blob(3).write_bytes(bytes(blob))
    dest = tmp_path / "m.safetensors"
    result = runner.invoke(app, ["export", str(federation.out), "3", "--out", str(dest)])
    assert result.exit_code == 2
    assert f"error: {federation.blob(3)}: damaged: its tensors hash to" in flat(result.output)
    assert not dest.exists()


@pytest.mark.parametrize("command", [["list"], ["show", "latest"], ["export", "0", "--out", "m"]])
def test_a_folder_without_state_exits_2(tmp_path: Path, command: list[str]) -> None:
    args = [command[0], str(tmp_path), *command[1:]]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"error: {tmp_path}: not a fedsov output folder (no state/fedsov.db)" in flat(
        result.output
    )
