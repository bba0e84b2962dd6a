"""``cycle``: following upstreams never comes back to where it started."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan
from fedsov.policy.rules.base import RuleBase, Violation


class Cycle(RuleBase):
    id = "cycle"
    order = 3
    needs_sound_topology = False
    breaks_topology = frozenset({"cycle"})

    def check(self, plan: Plan) -> Iterator[Violation]:
        names = {n.name: n for n in plan.nodes}
        reported: set[str] = set()
        for start in plan.nodes:
            path: list[str] = []
            current: str | None = start.name
            while current is not None and current in names and current not in path:
                path.append(current)
                current = names[current].upstream
            if current is not None and current in path:
                loop = path[path.index(current) :]
                if not reported.intersection(loop):
                    reported.update(loop)
                    first = loop.index(min(loop))  # a loop reads the same, whatever the order
                    loop = loop[first:] + loop[:first]
                    yield Violation(loop[0], "cycle", " -> ".join([*loop, loop[0]]) + " loops")


RULE = Cycle()
