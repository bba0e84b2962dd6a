"""``fedsov policy check``: the plan's topology against its own policy, before anything runs.

Each violation names a node (``(plan)`` when there is no global node at all; the
jurisdiction for ``budget-missing``), a rule id and why. The rule ids are stable:

Topology

- ``global-count``: exactly one global node, and it has no upstream.
- ``missing-upstream``: a regional or edge node without an upstream.
- ``unknown-upstream``: an upstream that is not a node of the plan.
- ``cycle``: following upstreams comes back to where it started (names the loop).
- ``tier-order``: nothing may report to an edge site (sites never listen); edge
  sites and regional aggregators report to a regional or the global node.
- ``min-sites-unreachable``: a regional aggregator's own ``min_sites`` exceeds the
  sites below it, so none of its rounds could ever close.

Sovereignty (judged only once no upstream is unknown and nothing loops: on a
broken topology their findings would be noise)

- ``residency``: a node's updates would go to a jurisdiction its residency forbids.
- ``export-forbidden``: an update would leave a jurisdiction whose export rule
  forbids it (no rule: nothing leaves); a single site's update never crosses a
  border unless the rule asks for no more than 1 site and no site-level DP.
- ``export-k-unreachable``: a regional aggregator that exports across a border has
  fewer sites below it than the export rule's k, so no round could ever export.
- ``export-k-below``: such an aggregator's own ``min_sites`` is below the export
  rule's k: it would train rounds whose aggregate may never leave.
- ``sites-per-round-below-k``: a node that asks ``[rounds] sites_per_round`` of its
  sites a round (one that serves only edge sites) asks fewer than its rounds need to
  close and leave: its own ``min_sites``, the export rule's k across a border, or the
  secure aggregation threshold that binds it.
- ``export-dp-missing``: the export rule needs site-level DP, and the plan has no
  ``[policy.site_dp]`` (or one that adds no noise).
- ``budget-missing``: a jurisdiction exports, and has no jurisdiction ε budget.

Privacy (judged on any topology)

- ``sample-dp-required``: an edge site of a jurisdiction listed in ``[policy]
  sample_dp`` does not train with sample-level DP: its plan entry says
  ``dp = "update"`` (whole-update DP, e.g. a Flower app), or the plan's ``[privacy]``
  is disabled. At run time the site refuses to start, also when its own trainer
  provides no DP-SGD, and its upstream rejects an update whose privacy report
  shows none.
- ``secure-aggregation-unreachable``: a node ``[policy.secure_aggregation]`` binds has
  fewer edge sites directly below it than the threshold t: no secure round of it
  could complete.
- ``secure-aggregation-participants``: such a node has aggregators below it too; only
  edge sites take part in a secure round.

Violations come sorted by rule, node and reason, whatever the order of the nodes.
Each rule lives in its own module of ``fedsov.policy.rules``; this is their loop.
"""

from __future__ import annotations

from fedsov.policy.plan import Plan
from fedsov.policy.rules import RULES
from fedsov.policy.rules.base import Violation

__all__ = ["Violation", "check_plan"]


def check_plan(plan: Plan) -> list[Violation]:
    """Every violation of the plan's topology and policy, in a stable order."""
    found = [v for rule in RULES if not rule.needs_sound_topology for v in rule.check(plan)]
    breaking = {i for rule in RULES for i in rule.breaks_topology}
    if not any(v.rule in breaking for v in found):
        found += [v for rule in RULES if rule.needs_sound_topology for v in rule.check(plan)]
    return sorted(set(found), key=lambda v: (v.rule, v.node, v.reason))
