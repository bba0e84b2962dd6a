"""benchmarks/vs_flower/simulation.py's pure parts: arguments, the scenario, the table.

Running it needs Ray and minutes (Flower's engine at 1,000 sites); these check what it
computes and writes without starting either system.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tomli_w

from fedsov.simulation.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "vs_flower_simulation", ROOT / "benchmarks/vs_flower/simulation.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_defaults_are_the_issue_scale(sim: ModuleType) -> None:
    args = sim.parse_args([])
    assert (args.sites, args.per_round, args.rounds) == (1000, 100, 5)
    assert sim.check_args(args) == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--sites", "10", "--per-round", "11"], "--per-round must be between 1 and --sites"),
        (["--per-round", "0"], "--per-round must be between"),
        (["--rounds", "1"], "--rounds must be at least 2"),
        (["--dataset", "cifar"], "--dataset: unknown 'cifar'"),
        (["--systems", "flower,pysyft"], "--systems: unknown pysyft"),
        (["--fedsov-backend", "dask"], "--fedsov-backend must be local or ray"),
        (["--lr", "0"], "--lr must be positive"),
    ],
)
def test_bad_arguments_are_named(sim: ModuleType, argv: list[str], problem: str) -> None:
    args = sim._parser().parse_args(argv)
    assert any(problem in p for p in sim.check_args(args))


def test_parse_args_exits_with_the_problem(
    sim: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        sim.parse_args(["--rounds", "1"])
    assert exc.value.code == 2
    assert "--rounds must be at least 2" in capsys.readouterr().err


@pytest.mark.parametrize(("dataset", "features"), [("synthetic", 60), ("digits", 64)])
def test_the_scenario_is_a_virtual_dp_off_run_of_per_round_sites(
    sim: ModuleType, tmp_path: Path, dataset: str, features: int
) -> None:
    args = sim.parse_args(
        ["--sites", "40", "--per-round", "7", "--rounds", "3", "--dataset", dataset]
    )
    path = tmp_path / "scenario.toml"
    path.write_text(tomli_w.dumps(sim.scenario(args)), encoding="utf-8")
    sc = load_scenario(path)
    assert (sc.data.sites, sc.data.dataset, sc.data.partition) == (40, dataset, "dirichlet")
    assert (sc.rounds.num_rounds, sc.rounds.sites_per_round, sc.rounds.min_sites) == (3, 7, 7)
    assert not sc.privacy.enabled
    assert (sc.runtime.mode, sc.runtime.backend) == ("virtual", "local")
    assert sc.model.kwargs["in_features"] == features
    assert (sc.training.local_epochs, sc.training.batch_size) == (1, 32)


def test_round_stats_report_the_first_round_alone(sim: ModuleType) -> None:
    assert sim.round_stats([9.0, 1.0, 3.0, 2.0]) == {"first_round_s": 9.0, "round_s_median": 2.0}
    assert sim.round_stats([9.0]) == {"first_round_s": 9.0, "round_s_median": None}
    assert sim.round_stats([]) == {"first_round_s": None, "round_s_median": None}


def test_table_has_a_column_per_system_and_says_why_one_failed(sim: ModuleType) -> None:
    args = sim.parse_args(["--fedsov-backend", "ray"])
    flower = sim.Result(
        "flower", time_to_first_round_s=16.44, round_s=[14.6, 0.5, 0.6], final_accuracy=0.47791
    )
    fedsov = sim.Result("fedsov", why="exit 1, 0 of 5 rounds: boom")
    table = sim.markdown(args, [flower, fedsov], 0.5)
    lines = table.splitlines()
    assert "| | Flower run_simulation (Ray) | fedsov simulate (virtual, ray) |" in lines
    assert "| time to first round (s) | 16.4 | — |" in lines
    assert "| first round (s) | 14.60 | — |" in lines
    assert "| round, median of rounds 2+ (s) | 0.55 | — |" in lines
    assert "| final test accuracy | 0.4779 | — |" in lines
    assert "- fedsov: exit 1, 0 of 5 rounds: boom" in lines
    assert lines[0].startswith("1000 sites, 100 per round, 5 rounds; synthetic")
    summary = flower.summary()
    assert summary["first_round_s"] == 14.6 and summary["round_s_median"] == 0.55
