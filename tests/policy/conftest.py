"""Small federation plans written on the fly, for the policy tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

HEAD = """\
[federation]
name = "test-fed"
seed = 3

[model]
factory = "fedsov.simulation.models:mlp"

[rounds]
num_rounds = 2
"""

Node = tuple[str, str, str, str | None]  # name, tier, jurisdiction, upstream


def plan_text(
    nodes: list[Node], policy: str = "", extra: dict[str, dict[str, str]] | None = None
) -> str:
    """A plan's TOML: ``nodes`` as (name, tier, jurisdiction, upstream), then ``policy``."""
    parts = [HEAD]
    for name, tier, jurisdiction, upstream in nodes:
        lines = [
            "[[nodes]]",
            f'name = "{name}"',
            f'tier = "{tier}"',
            f'jurisdiction = "{jurisdiction}"',
        ]
        if upstream is not None:
            lines.append(f'upstream = "{upstream}"')
        lines += [f"{k} = {v}" for k, v in (extra or {}).get(name, {}).items()]
        parts.append("\n".join(lines) + "\n")
    parts.append(policy)
    return "\n".join(parts)


@pytest.fixture
def write_plan(tmp_path: Path) -> Callable[..., Path]:
    """Write a plan (nodes, policy TOML, per-node extra keys) and return its path."""

    def write(
        nodes: list[Node],
        policy: str = "",
        *,
        extra: dict[str, dict[str, str]] | None = None,
        name: str = "plan.toml",
    ) -> Path:
        path = tmp_path / name
        path.write_text(plan_text(nodes, policy, extra))
        return path

    return write
