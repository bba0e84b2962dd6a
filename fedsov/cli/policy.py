"""``fedsov policy``: check a federation plan before anything runs."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedsov.cli.errors import fail
from fedsov.exceptions import ConfigError

app = typer.Typer(help="Check a federation plan against its policy.", no_args_is_help=True)
console = Console()


@app.callback()
def policy() -> None:
    """Check a federation plan against its policy."""


@app.command()
def check(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="Federation plan (TOML).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Report every violation (exit 1), or say the plan is OK (exit 0)."""
    from fedsov.policy.check import check_plan
    from fedsov.policy.plan import Tier, load_plan

    try:
        plan = load_plan(plan_path)
    except ConfigError as exc:
        raise fail(exc) from exc
    violations = check_plan(plan)
    if as_json:
        print(
            json.dumps(
                {
                    "plan_sha256": plan.sha256,
                    "ok": not violations,
                    "violations": [asdict(v) for v in violations],
                },
                indent=2,
            )
        )
    elif violations:
        table = Table(title=f"{plan_path}: {len(violations)} violation(s)")
        for col in ("node", "rule", "reason"):
            table.add_column(col)
        for v in violations:
            table.add_row(escape(v.node), v.rule, escape(v.reason))
        console.print(table)
    else:
        counts = {t: sum(1 for n in plan.nodes if n.tier is t) for t in Tier}
        places = ", ".join(sorted({n.jurisdiction for n in plan.nodes}))
        console.print(
            f"plan OK: {escape(str(plan_path))} (SHA-256 {plan.sha256})\n"
            f"{counts[Tier.GLOBAL]} global, {counts[Tier.REGIONAL]} regional, "
            f"{counts[Tier.EDGE]} edge across {places}",
            highlight=False,
        )
    if violations:
        raise typer.Exit(1)
