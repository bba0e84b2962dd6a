"""Whole federations on one machine: a scenario (one coordinator and its sites) or a
federation plan (every tier), as real processes over loopback mTLS."""

from fedsov.simulation.hierarchy import Deployment, prepare_deployment, run_plan_simulation
from fedsov.simulation.launcher import run_simulation
from fedsov.simulation.scenario import Scenario, load_scenario

__all__ = [
    "Deployment",
    "Scenario",
    "load_scenario",
    "prepare_deployment",
    "run_plan_simulation",
    "run_simulation",
]
