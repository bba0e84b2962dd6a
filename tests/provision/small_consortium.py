"""A small consortium plan: simulations/consortium.toml cut to 1 coordinator, 2 regional
aggregators (EU, IN) and 2 sites each (the provision tests and the status e2e test)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

CONSORTIUM = Path(__file__).resolve().parents[2] / "simulations" / "consortium.toml"
KEEP = {"coordinator", "agg-eu", "agg-in", "paris", "berlin", "mumbai", "delhi"}


def small_consortium(path: Path, *, rounds: int = 3) -> Path:
    """The consortium with its US region and half its sites removed; IN exports
    aggregates of >= 2 sites (it has 2) with site-level DP. Its policy check passes."""
    plan = tomllib.loads(CONSORTIUM.read_text())
    plan["rounds"]["num_rounds"] = rounds
    plan["nodes"] = [n for n in plan["nodes"] if n["name"] in KEEP]
    policy = plan["policy"]
    del policy["residency"]["US"], policy["export"]["US"]
    del policy["budgets"]["jurisdiction_epsilon"]["US"]
    policy["export"]["IN"]["min_sites"] = 2
    path.write_text(tomli_w.dumps(plan))
    return path
