"""The rule contract: every module of fedsov.policy.rules is one Rule in RULES, and
the static check, the run-time guards and the compliance report each ask every rule."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedsov.audit import AuditLedger
from fedsov.audit.signing import Signer
from fedsov.pki._keys import generate_key
from fedsov.policy import check_plan, load_plan, rules
from fedsov.policy.compliance import compliance_report
from fedsov.policy.rules import RULES, Rule, RuleBase, discover
from fedsov.policy.runtime import (
    export_requirement,
    require_may_join,
    require_may_send,
    require_update_allowed,
)

WritePlan = Callable[..., Path]

NODES = [
    ("hub", "global", "EU", None),
    ("agg-in", "regional", "IN", "hub"),
    ("pune", "edge", "IN", "agg-in"),
    ("delhi", "edge", "IN", "agg-in"),
]
POLICY = """
[policy.residency]
IN = ["IN", "EU"]

[policy.export]
IN = { min_sites = 2 }

[policy.budgets]
jurisdiction_epsilon = { IN = 10.0 }
"""
HOOKS = ("check", "refuse", "refuse_upstream", "refuse_update", "requirement", "judge")


def test_every_rule_module_defines_one_rule_and_all_are_in_the_registry() -> None:
    modules = [m.name for m in pkgutil.iter_modules(rules.__path__) if m.name != "base"]
    found = {importlib.import_module(f"fedsov.policy.rules.{m}").RULE for m in modules}
    assert found == set(RULES)
    assert len(RULES) == len(modules)
    assert all(isinstance(r, Rule) and isinstance(r, RuleBase) for r in RULES)
    assert len({r.id for r in RULES}) == len(RULES)
    assert [(r.order, r.id) for r in RULES] == sorted((r.order, r.id) for r in RULES)
    assert discover() == RULES


def test_each_rule_id_is_its_module_name() -> None:
    for rule in RULES:
        assert type(rule).__module__ == f"fedsov.policy.rules.{rule.id}"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Which rule ids each hook was called for (the rules still answer as before)."""
    seen: dict[str, set[str]] = {hook: set() for hook in HOOKS}
    for rule in RULES:
        for hook in HOOKS:
            original = getattr(rule, hook)

            def spy(*args: Any, _o: Any = original, _h: str = hook, _id: str = rule.id) -> Any:
                seen[_h].add(_id)
                return _o(*args)

            monkeypatch.setattr(rule, hook, spy)
    return seen


def every_id() -> set[str]:
    return {r.id for r in RULES}


def test_check_plan_asks_every_rule(write_plan: WritePlan, calls: dict[str, set[str]]) -> None:
    assert check_plan(load_plan(write_plan(NODES, POLICY))) == []
    assert calls["check"] == every_id()


def test_the_run_time_guards_ask_every_rule(
    write_plan: WritePlan, calls: dict[str, set[str]]
) -> None:
    plan = load_plan(write_plan(NODES, POLICY))
    require_may_send(plan, "agg-in")
    assert export_requirement(plan, "agg-in").min_sites == 2
    require_may_join(
        plan, "pune", federation=plan.federation, upstream_name="agg-in", upstream_jurisdiction="IN"
    )
    require_update_allowed(plan, "pune", sample_dp=True)
    assert calls["refuse"] == calls["requirement"] == calls["refuse_upstream"] == every_id()
    assert calls["refuse_update"] == every_id()


def test_the_compliance_report_asks_every_rule(
    tmp_path: Path, write_plan: WritePlan, calls: dict[str, set[str]]
) -> None:
    run = tmp_path / "run"
    plan = load_plan(write_plan(NODES, POLICY))
    (run / "audit").mkdir(parents=True)
    (run / "plan.toml").write_bytes(plan.source.read_bytes())
    ledger = AuditLedger.open(
        run / "agg-in.audit.jsonl",
        signer=Signer(generate_key()),
        node="agg-in",
        jurisdiction="IN",
        plan_sha256=plan.sha256,
    )
    ledger.append(
        event="update-sent",
        round=1,
        peer="hub",
        peer_jurisdiction="EU",
        content_sha256="ab" * 32,
        decision="accepted",
        detail={"sites": 2, "contributors": ["pune", "delhi"], "dp": {"level": "none"}},
    )
    ledger.close()
    report = compliance_report(run)
    [crossing] = report["crossings"]
    assert crossing["respects_plan"] is True, crossing["violations"]
    assert calls["judge"] == every_id()
