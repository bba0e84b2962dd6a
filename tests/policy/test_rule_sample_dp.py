"""``sample-dp-required``: a jurisdiction's sites train with sample-level DP, judged in
the plan, by the site at start-up, by its upstream on receipt and after the fact."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.codec import Manifest
from fedsov.exceptions import ConfigError, PolicyViolation
from fedsov.messages import PrivacyLevel, PrivacyReport, UpdateHeader
from fedsov.policy import Plan, check_plan, load_plan
from fedsov.policy.rules.base import Crossing
from fedsov.policy.rules.sample_dp import RULE
from fedsov.policy.runtime import UpdatePolicy, require_may_send, require_update_allowed

WritePlan = Callable[..., Path]

NODES = [
    ("hub", "global", "EU", None),
    ("agg-eu", "regional", "EU", "hub"),
    ("paris", "edge", "EU", "agg-eu"),
    ("lyon", "edge", "EU", "agg-eu"),
    ("pune", "edge", "IN", "hub"),
]
POLICY = """
[policy]
sample_dp = ["EU"]

[policy.residency]
IN = ["IN", "EU"]

[policy.export]
IN = { min_sites = 1 }

[policy.budgets]
jurisdiction_epsilon = { IN = 10.0 }
"""
PARIS_UPDATE = {"paris": {"dp": '"update"'}}
FIX = (
    'train it with fedsov\'s DP-SGD ([privacy] enabled, dp = "sample" in its plan entry; '
    'a Flower app: through fedsov.site.flower_privacy.make_private, [trainer] dp = "sample"), '
    "or drop EU from sample_dp"
)


def sample_dp_plan(
    write_plan: WritePlan, *, extra: dict[str, dict[str, str]], head: str = ""
) -> Plan:
    return load_plan(write_plan(NODES, head + POLICY, extra=extra))


def found(plan: Plan) -> list[tuple[str, str]]:
    return [(v.node, v.reason) for v in check_plan(plan) if v.rule == "sample-dp-required"]


def test_a_site_without_sample_dp_in_a_jurisdiction_that_requires_it_is_listed(
    write_plan: WritePlan,
) -> None:
    plan = sample_dp_plan(write_plan, extra={**PARIS_UPDATE, "pune": {"dp": '"update"'}})
    reason = (
        "EU requires sample-level DP of its sites ([policy] sample_dp), but the plan entry "
        f"of 'paris' says dp = \"update\": {FIX}"
    )
    assert found(plan) == [("paris", reason)]  # pune: IN requires nothing
    assert [v.rule for v in check_plan(plan)] == ["sample-dp-required"]


def test_sites_with_sample_dp_and_dp_of_a_regional_node_are_not_listed(
    write_plan: WritePlan,
) -> None:
    plan = sample_dp_plan(
        write_plan, extra={"paris": {"dp": '"sample"'}, "agg-eu": {"dp": '"update"'}}
    )
    assert check_plan(plan) == []


def test_a_plan_without_privacy_lists_every_site_of_the_jurisdiction(
    write_plan: WritePlan,
) -> None:
    plan = sample_dp_plan(write_plan, extra={}, head="[privacy]\nenabled = false\n\n")
    reason = (
        "EU requires sample-level DP of its sites ([policy] sample_dp), "
        f"but the plan's [privacy] is disabled: {FIX}"
    )
    assert found(plan) == [("lyon", reason), ("paris", reason)]


def test_dp_is_sample_or_update(write_plan: WritePlan) -> None:
    path = write_plan(NODES, POLICY, extra={"paris": {"dp": '"site"'}})
    with pytest.raises(ConfigError, match=r"nodes\[2\]\.dp: 'site' is not one of sample, update"):
        load_plan(path)


def test_the_site_refuses_to_send_when_its_plan_entry_lacks_sample_dp(
    write_plan: WritePlan,
) -> None:
    plan = sample_dp_plan(write_plan, extra=PARIS_UPDATE)
    message = (
        "'paris' refuses to send to 'agg-eu': sample-dp-required: EU requires sample-level "
        "DP of its sites ([policy] sample_dp), but the plan entry of 'paris' says "
        f'dp = "update": {FIX}'
    )
    with pytest.raises(PolicyViolation, match=f"^{re.escape(message)}$"):
        require_may_send(plan, "paris")
    require_may_send(plan, "lyon")


def test_an_update_without_sample_dp_is_refused_whatever_the_plan_entry_says(
    write_plan: WritePlan,
) -> None:
    plan = sample_dp_plan(write_plan, extra={})  # lyon's entry: dp = "sample"
    message = (
        "update of 'lyon' refused: sample-dp-required: EU requires sample-level DP of its "
        f"sites ([policy] sample_dp), but the update of 'lyon' is not trained with "
        f"sample-level DP: {FIX}"
    )
    with pytest.raises(PolicyViolation, match=f"^{re.escape(message)}$"):
        require_update_allowed(plan, "lyon", sample_dp=False)
    require_update_allowed(plan, "lyon", sample_dp=True)
    require_update_allowed(plan, "pune", sample_dp=False)  # IN requires nothing
    require_update_allowed(plan, "agg-eu", sample_dp=False)  # a region's aggregate


def header(privacy: PrivacyReport) -> UpdateHeader:
    return UpdateHeader("t-1", 1, Manifest(()), 10, 0, "00" * 32, "11" * 32, privacy)


def test_the_receiving_end_judges_the_privacy_report_of_the_header(
    write_plan: WritePlan,
) -> None:
    judge = UpdatePolicy(sample_dp_plan(write_plan, extra={}))
    dp_sgd = PrivacyReport(enabled=True, epsilon=1.0, delta=1e-5, noise_multiplier=1.0)
    no_dp = PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)
    with pytest.raises(PolicyViolation, match=r"^update of 'paris' refused: sample-dp-required: "):
        judge("paris", header(no_dp))
    judge("paris", header(dp_sgd))
    judge("pune", header(no_dp))


def test_the_compliance_judge_finds_a_crossing_without_sample_dp(write_plan: WritePlan) -> None:
    plan = sample_dp_plan(write_plan, extra={})

    def crossing(sender: str, dp: dict[str, object] | None) -> Crossing:
        return Crossing(sender, "EU", "hub-us", "US", 1, (sender,), dp)

    assert list(RULE.judge(plan, crossing("paris", {"level": "none"}))) == [
        "EU requires sample-level DP of its sites; this update had 'none'"
    ]
    assert list(RULE.judge(plan, crossing("paris", None))) == [
        "EU requires sample-level DP of its sites; this update had 'none'"
    ]
    assert list(RULE.judge(plan, crossing("paris", {"level": "sample"}))) == []
    assert list(RULE.judge(plan, crossing("agg-eu", {"level": "site"}))) == []


FLOWER_APP = """
[simulation.trainer]
kind = "flower"
app = "flower_app.client_app:app"
dp = "{dp}"
"""


def test_sites_running_a_flower_app_without_make_private_are_listed(
    write_plan: WritePlan,
) -> None:
    plan = load_plan(write_plan(NODES, POLICY + FLOWER_APP.format(dp="update")))
    reason = (
        "EU requires sample-level DP of its sites ([policy] sample_dp), but 'paris' runs "
        f'the Flower app of [simulation.trainer] with dp = "update" (update-level DP): {FIX}'
    )
    assert found(plan)[-1] == ("paris", reason)
    assert [node for node, _ in found(plan)] == ["lyon", "paris"]  # pune: IN requires nothing
    with pytest.raises(PolicyViolation, match=re.escape(f"sample-dp-required: {reason}")):
        require_may_send(plan, "paris")
    assert found(load_plan(write_plan(NODES, POLICY + FLOWER_APP.format(dp="sample")))) == []


def test_an_update_level_report_is_refused_where_sample_level_dp_is_required(
    write_plan: WritePlan,
) -> None:
    judge = UpdatePolicy(sample_dp_plan(write_plan, extra={}))
    update_level = PrivacyReport(
        enabled=True, epsilon=50.0, delta=1e-5, noise_multiplier=0.05, level=PrivacyLevel.UPDATE
    )
    with pytest.raises(PolicyViolation, match=r"^update of 'paris' refused: sample-dp-required: "):
        judge("paris", header(update_level))
    judge("pune", header(update_level))  # IN requires nothing
