"""``backend = "ray"``: the quickstart on a two-node Ray cluster (loopback, started by
the test) gives the model local virtual sites give, with DP off."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'fedsov[ray]'")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "simulation"))
from ray_local_cluster import cluster_processes, local_ray_cluster, ray_env
from virtual_runs import final_model, max_abs_diff, run

QUICKSTART = Path(__file__).resolve().parents[2] / "simulations" / "quickstart.toml"


def quickstart_without_dp(tmp_path: Path) -> Path:
    text = QUICKSTART.read_text()
    text = text.replace("num_rounds = 32", "num_rounds = 4").replace(
        "enabled = true", "enabled = false"
    )
    assert "num_rounds = 4" in text and "enabled = false" in text
    scenario = tmp_path / "quickstart.toml"
    scenario.write_text(text)
    return scenario


def test_the_quickstart_on_two_ray_nodes_matches_local_virtual_sites(tmp_path: Path) -> None:
    scenario = quickstart_without_dp(tmp_path)
    local = run(scenario, tmp_path / "local", "--mode", "virtual", "--workers", "2")
    with local_ray_cluster(tmp_path) as address:
        on_ray = run(
            scenario,
            tmp_path / "ray",
            "--backend",
            "ray",
            "--ray-address",
            address,
            env=ray_env(tmp_path),
        )
    assert cluster_processes(tmp_path) == []
    assert local["status"] == on_ray["status"] == "completed"
    assert on_ray["simulation"]["backend"] == "ray"  # type: ignore[index]
    assert on_ray["rounds"] == local["rounds"] == 4
    log = (tmp_path / "ray" / "logs" / "site-hosts-ray.log").read_text()
    assert "2 site hosts on 2 node(s)" in log, log[-2000:]
    diff = max_abs_diff(final_model(tmp_path / "local"), final_model(tmp_path / "ray"))
    assert diff <= 1e-6, diff
