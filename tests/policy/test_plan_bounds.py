"""Plan fields at their defaults and at their bounds: the smallest value loads, below it fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.exceptions import ConfigError
from fedsov.policy import load_plan

WritePlan = Callable[..., Path]
NODES = [("hub", "global", "EU", None), ("agg", "regional", "IN", "hub")]
BUDGETS = "[policy.budgets]\n"


def write(write_plan: WritePlan, old: str = "", new: str = "", policy: str = "") -> Path:
    path = write_plan(NODES, policy, extra={"agg": {"min_sites": "1"}})
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


def test_seed_and_round_timeout_take_their_defaults(write_plan: WritePlan) -> None:
    plan = load_plan(write(write_plan, "seed = 3\n", ""))
    assert plan.seed == 0
    assert plan.rounds.timeout_s == pytest.approx(300.0)


def test_the_smallest_allowed_values_load(write_plan: WritePlan) -> None:
    policy = BUDGETS + "site_epsilon = 0.5\njurisdiction_epsilon = { IN = 0.5 }\n"
    path = write(write_plan, "num_rounds = 2", "num_rounds = 1\ntimeout_s = 0.5", policy)
    plan = load_plan(path)
    assert plan.rounds.num_rounds == 1
    assert plan.rounds.timeout_s == pytest.approx(0.5)
    assert plan.node("agg").min_sites == 1
    assert plan.policy.budgets.site_epsilon == pytest.approx(0.5)
    assert dict(plan.policy.budgets.jurisdiction_epsilon) == pytest.approx({"IN": 0.5})


@pytest.mark.parametrize(
    ("old", "new", "policy", "message"),
    [
        ("seed = 3", "seed = -1", "", "federation.seed: must be >= 0, got -1"),
        (
            "num_rounds = 2",
            "num_rounds = 2\ntimeout_s = 0",
            "",
            "rounds.timeout_s: must be > 0.0, got 0.0",
        ),
        ("min_sites = 1", "min_sites = 0", "", "nodes[1].min_sites: must be >= 1, got 0"),
        (
            "",
            "",
            BUDGETS + "jurisdiction_epsilon = { IN = 0.0 }\n",
            "policy.budgets.jurisdiction_epsilon.IN: must be > 0.0, got 0.0",
        ),
        (
            "",
            "",
            BUDGETS + "site_epsilon = 0.0\n",
            "policy.budgets.site_epsilon: must be > 0.0, got 0.0",
        ),
    ],
)
def test_a_value_below_its_bound_is_named(
    write_plan: WritePlan, old: str, new: str, policy: str, message: str
) -> None:
    path = write(write_plan, old, new, policy)
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    assert str(info.value) == f"{path}: {message}"
