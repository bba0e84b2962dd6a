"""benchmarks/vs_flower/run.py --quick: a real coordinator and two no-op site
processes, tiny model, two rounds, fedsov only (no Flower install in CI)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_quick_run_reports_a_round_time_and_site_memory(tmp_path: Path) -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/vs_flower/run.py"),
            "--quick",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert run["system"] == "fedsov"
    assert run["finished"], run["why"]
    assert math.isfinite(run["round_s_median"])
    assert run["round_s_median"] > 0
    assert 0 < run["site_self_rss_mb_max"] < 1024  # the site printed its ru_maxrss
    assert run["site_rss_mb"] > 0
    assert run["after_last_close_s"] is not None
    table = (tmp_path / "table.md").read_text()
    assert "| round, 2 sites x 10k params (--quick) |" in table
    assert "TLS 1.3 loopback limit" in table


def test_flower_app_project_names_the_pinned_flower() -> None:
    """The Flower app's requirement agrees with the version the project pins."""
    import tomllib

    pin = next(
        d
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("flwr")
    )
    app = tomllib.loads((ROOT / "benchmarks/vs_flower/flower_app/pyproject.toml").read_text())
    assert pin in app["project"]["dependencies"]
    assert set(app["tool"]["flwr"]["app"]["components"]) == {"serverapp", "clientapp"}
