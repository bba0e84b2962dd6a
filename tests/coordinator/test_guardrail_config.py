"""``[guardrails]`` in a coordinator config, a federation plan and a flat scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsov.config import GuardrailSettings
from fedsov.coordinator import config as coordinator_config
from fedsov.exceptions import ConfigError
from fedsov.exitcodes import GUARDRAIL_EXIT
from fedsov.policy.plan import load_plan
from fedsov.simulation.launcher import _coordinator_config
from fedsov.simulation.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]

COORDINATOR = """
[federation]
name = "fed"
[server]
address = "127.0.0.1:0"
insecure = true
[model]
factory = "fedsov.simulation.models:logistic"
[rounds]
num_rounds = 3
"""

GUARDRAILS = """
[guardrails]
max_wall_time_s = 3600
max_site_training_s = 600.5
max_jurisdiction_training_s = { EU = 1800, "*" = 900 }
epsilon_ceiling = { EU = 8.0 }
no_improvement_rounds = 5
min_delta = 0.001
max_drop = 0.05
"""

PLAN = """
[federation]
name = "fed"
[model]
factory = "fedsov.simulation.models:logistic"
[rounds]
num_rounds = 2
[[nodes]]
name = "hub"
tier = "global"
jurisdiction = "EU"
[[nodes]]
name = "paris"
tier = "edge"
jurisdiction = "EU"
upstream = "hub"
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_coordinator_config_declares_its_stop_rules(tmp_path: Path) -> None:
    assert coordinator_config.load(write(tmp_path, COORDINATOR)).guardrails is None
    g = coordinator_config.load(write(tmp_path, COORDINATOR + GUARDRAILS)).guardrails
    assert g == GuardrailSettings(
        max_wall_time_s=3600.0,
        max_site_training_s=600.5,
        max_jurisdiction_training_s={"EU": 1800.0, "*": 900.0},
        epsilon_ceiling={"EU": 8.0},
        no_improvement_rounds=5,
        min_delta=0.001,
        max_drop=0.05,
    )
    assert g.limit(g.max_jurisdiction_training_s, "IN") == 900.0
    assert g.limit(g.epsilon_ceiling, "IN") is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("max_wall_time_s = 0", "guardrails.max_wall_time_s: must be > 0.0, got 0.0"),
        ("epsilon_ceiling = { eu = 8 }", "guardrails.epsilon_ceiling: 'eu' is not a jurisdiction"),
        ("epsilon_ceiling = { EU = -1 }", "guardrails.epsilon_ceiling.EU: must be > 0.0"),
        ("max_jurisdiction_training_s = 'lots'", "max_jurisdiction_training_s: must be a table"),
        ("no_improvement_rounds = 0", "guardrails.no_improvement_rounds: must be >= 1, got 0"),
        ("mode = 'up'", "guardrails.mode: 'up' is not one of max, min"),
        ("max_drop = -0.1", "guardrails.max_drop: must be >= 0.0"),
        ("maxdrop = 1", "unknown key 'maxdrop' (did you mean 'max_drop'?)"),
    ],
)
def test_a_wrong_rule_names_file_and_key(tmp_path: Path, table: str, message: str) -> None:
    path = write(tmp_path, f"{COORDINATOR}\n[guardrails]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        coordinator_config.load(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_a_plan_declares_stop_rules_for_its_own_jurisdictions(tmp_path: Path) -> None:
    assert load_plan(write(tmp_path, PLAN)).guardrails is None
    rules = "[guardrails]\nepsilon_ceiling = { EU = 4.0 }\nmax_jurisdiction_training_s = 60\n"
    plan = load_plan(write(tmp_path, PLAN + rules))
    assert plan.guardrails == GuardrailSettings(
        epsilon_ceiling={"EU": 4.0}, max_jurisdiction_training_s={"*": 60.0}
    )
    typo = "[guardrails]\nepsilon_ceiling = { EU = 4.0, UE = 2.0 }\n"
    with pytest.raises(ConfigError, match=r"guardrails\.epsilon_ceiling: no node of the plan is "):
        load_plan(write(tmp_path, PLAN + typo))


def test_a_scenario_hands_its_stop_rules_to_its_coordinator(tmp_path: Path) -> None:
    text = (ROOT / "simulations" / "quickstart.toml").read_text() + GUARDRAILS
    sc = load_scenario(write(tmp_path, text, "scenario.toml"))
    assert sc.guardrails is not None and sc.guardrails.epsilon_ceiling == {"EU": 8.0}
    from fedsov.config import write_toml

    table = _coordinator_config(sc, tmp_path, _paths(tmp_path), tmp_path / "test.npz")
    written = coordinator_config.load(write_toml(tmp_path / "coordinator.toml", table))
    assert written.guardrails == sc.guardrails


def _paths(tmp_path: Path):  # type: ignore[no-untyped-def]
    from fedsov.pki import NodePaths

    return NodePaths(cert=tmp_path / "c.pem", key=tmp_path / "c.key", ca=tmp_path / "ca.pem")


@pytest.mark.parametrize("kind", sorted(GUARDRAIL_EXIT))
def test_each_guardrail_scenario_loads_with_its_rule(kind: str) -> None:
    sc = load_scenario(ROOT / "simulations" / "guardrails" / f"{kind}.toml")
    g = sc.guardrails
    assert g is not None
    rule = {
        "wall-time": g.max_wall_time_s,
        "compute-budget": g.max_site_training_s or g.max_jurisdiction_training_s or None,
        "privacy-ceiling": g.epsilon_ceiling or None,
        "no-improvement": g.no_improvement_rounds,
        "regression": g.max_drop,
    }
    assert rule.pop(kind) is not None
    assert set(rule.values()) == {None}, f"{kind}.toml sets another rule too"
