"""The policy rules: one module per rule, each defining one ``RULE`` object.

``RULES`` holds every module's ``RULE`` in ``order``, found by walking this
package, so adding a rule means adding its module (and its test), nothing else:
``check_plan``, ``require_may_send`` / ``export_requirement`` and the compliance
report loop over ``RULES`` (see ``base`` for what each of them asks a rule).
"""

from __future__ import annotations

import importlib
import pkgutil

from fedsov.policy.rules.base import Crossing, Requirement, Rule, RuleBase, Violation

__all__ = ["RULES", "Crossing", "Requirement", "Rule", "RuleBase", "Violation", "discover"]


def discover() -> tuple[Rule, ...]:
    """Every rule module's ``RULE``, sorted by (``order``, ``id``)."""
    found: list[Rule] = []
    for module in pkgutil.iter_modules(__path__):
        if module.name == "base" or module.name.startswith("_"):
            continue
        rule = importlib.import_module(f"{__name__}.{module.name}").RULE
        if not isinstance(rule, Rule):
            raise TypeError(f"{__name__}.{module.name}.RULE is no Rule: {rule!r}")
        found.append(rule)
    ids = [r.id for r in found]
    if len(set(ids)) != len(ids):
        raise TypeError(f"two policy rules share an id: {sorted(ids)}")
    return tuple(sorted(found, key=lambda r: (r.order, r.id)))


RULES: tuple[Rule, ...] = discover()
