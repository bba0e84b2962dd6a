"""What a participant expects of its upstream's proved identity (issue 13, item 1):
from the plan or ``[upstream] name``; a site, another name or another jurisdiction
is refused with both sides named."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsov.exceptions import AccessDenied, ConfigError
from fedsov.participant import ExpectedUpstream
from fedsov.pki import NodeIdentity, Role
from fedsov.policy.plan import Plan, load_plan
from fedsov.testing import two_jurisdiction_plan


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    path = tmp_path / "plan.toml"
    path.write_text(two_jurisdiction_plan(name="expect", seed=1, rounds=1, timeout_s=5))
    return load_plan(path)


def _id(name: str, role: Role, jurisdiction: str = "EU") -> NodeIdentity:
    return NodeIdentity(name, role, jurisdiction, "expect")


def test_from_the_plan_a_site_expects_its_regional_aggregator(plan: Plan) -> None:
    expect = ExpectedUpstream.of(plan=plan, node="paris", name=None)
    assert expect == ExpectedUpstream("agg-eu", Role.aggregator, "EU")
    expect.check(_id("agg-eu", Role.aggregator))


def test_from_the_plan_a_region_expects_the_coordinator(plan: Plan) -> None:
    expect = ExpectedUpstream.of(plan=plan, node="agg-in", name="coordinator")
    assert expect == ExpectedUpstream("coordinator", Role.coordinator, "EU")


def test_config_name_must_agree_with_the_plan(plan: Plan) -> None:
    with pytest.raises(ConfigError, match=r"\[upstream\] name is 'agg-in'.*reports to 'agg-eu'"):
        ExpectedUpstream.of(plan=plan, node="paris", name="agg-in")


def test_without_a_plan_the_config_name_is_expected() -> None:
    assert ExpectedUpstream.of(plan=None, node="s", name="hub") == ExpectedUpstream("hub")


@pytest.mark.parametrize(
    ("seen", "wrong"),
    [
        (_id("agg-eu", Role.site), "role"),
        (_id("agg-eu", Role.coordinator), "role"),
        (_id("agg-in", Role.aggregator), "name"),
        (_id("agg-eu", Role.aggregator, "IN"), "jurisdiction"),
        (_id("berlin", Role.site, "IN"), "role and name and jurisdiction"),
    ],
)
def test_a_mismatch_names_both_sides(plan: Plan, seen: NodeIdentity, wrong: str) -> None:
    expect = ExpectedUpstream.of(plan=plan, node="paris", name=None)
    with pytest.raises(AccessDenied) as caught:
        expect.check(seen)
    message = str(caught.value)
    said = f"says name {seen.name}, role {seen.role}, jurisdiction {seen.jurisdiction}"
    assert said in message
    assert "expects name agg-eu, role aggregator, jurisdiction EU" in message
    assert f"(wrong {wrong})" in message


def test_a_site_is_never_an_upstream_even_unnamed() -> None:
    with pytest.raises(AccessDenied, match="role aggregator or coordinator"):
        ExpectedUpstream().check(_id("anyone", Role.site))
    ExpectedUpstream().check(_id("anyone", Role.coordinator))
