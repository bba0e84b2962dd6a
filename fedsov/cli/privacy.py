"""``fedsov privacy``: ε of DP-SGD settings, and the noise for a target ε."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedsov.cli.errors import fail
from fedsov.exceptions import ConfigError

app = typer.Typer(help="Privacy accounting for DP-SGD.", no_args_is_help=True)

Q = Annotated[float, typer.Option("--sample-rate", help="Poisson sampling rate q (batch / n).")]
T = Annotated[int, typer.Option("--steps", help="Number of DP-SGD steps.")]
D = Annotated[float, typer.Option("--delta", help="δ of (ε, δ)-DP.")]
A = Annotated[
    str,
    typer.Option(
        "--accountant",
        help="pld (replace-one neighbours: what sites report), or for add/remove-one "
        "neighbours rdp, prv or rdp-classic (TF-Privacy's conversion).",
    ),
]
J = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.callback()
def privacy() -> None:
    """Privacy accounting for DP-SGD."""


def _emit(result: dict[str, object], as_json: bool, key: str) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        value = result[key]
        text = f"{key} = {value:.4f}" if isinstance(value, float) else f"{key} = {value}"
        print(f"{text}  ({result['accountant']}, {result['neighbours']} neighbours)")


@app.command("epsilon")
def epsilon_command(
    sample_rate: Q,
    noise_multiplier: Annotated[float, typer.Option("--noise-multiplier", help="σ.")],
    steps: T,
    delta: D = 1e-5,
    accountant: A = "pld",
    as_json: J = False,
) -> None:
    """ε after STEPS Poisson-sampled Gaussian steps."""
    from fedsov.privacy.accountant import NEIGHBOURS
    from fedsov.privacy.calibrate import epsilon

    setting = {"sample_rate": sample_rate, "steps": steps, "delta": delta, "accountant": accountant}
    try:
        eps = epsilon(noise_multiplier=noise_multiplier, **setting)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise fail(exc) from exc
    result = {"epsilon": eps, "noise_multiplier": noise_multiplier, **setting}
    _emit(result | {"neighbours": NEIGHBOURS[accountant]}, as_json, "epsilon")


@app.command("noise")
def noise_command(
    target_epsilon: Annotated[float, typer.Option("--target-epsilon", help="ε to reach.")],
    sample_rate: Q,
    steps: T,
    delta: D = 1e-5,
    accountant: A = "pld",
    as_json: J = False,
) -> None:
    """The noise multiplier σ that keeps ε at or below the target."""
    from fedsov.privacy.accountant import NEIGHBOURS
    from fedsov.privacy.calibrate import calibrate_noise, epsilon

    setting = {"sample_rate": sample_rate, "steps": steps, "delta": delta, "accountant": accountant}
    try:
        sigma = calibrate_noise(target_epsilon=target_epsilon, **setting)  # type: ignore[arg-type]
        reached = epsilon(noise_multiplier=sigma, **setting)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise fail(exc) from exc
    result = {"noise_multiplier": sigma, "epsilon": reached, "target_epsilon": target_epsilon}
    _emit(result | setting | {"neighbours": NEIGHBOURS[accountant]}, as_json, "noise_multiplier")


@app.command("report")
def report_command(
    ledgers: Annotated[
        list[Path],
        typer.Argument(
            help="Privacy ledgers (sites' and regional aggregators' site-level ones), "
            "or one run folder: every ledger under it, and its plan.toml."
        ),
    ],
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="The federation plan: every edge site of it is listed, one that "
            "released nothing (no ledger, or an empty one) with ε 0.",
        ),
    ] = None,
    as_json: J = False,
) -> None:
    """ε spent per site, region, jurisdiction and federation, from the ledgers."""
    from rich.table import Table

    from fedsov.exceptions import DataError
    from fedsov.privacy.report import privacy_report

    try:
        paths, plan = _ledgers_and_plan(ledgers, plan)
        expected, federation = _expected_sites(plan)
        report = privacy_report(paths, expected_sites=expected, federation=federation)
    except (ConfigError, DataError) as exc:
        raise fail(exc) from exc
    if as_json:
        print(json.dumps(report, indent=2))
        return
    console = Console()
    tables = (
        ("sites", "site", "privacy spent per site (its ledger; unit: record or dataset)"),
        ("regions", "region", "privacy spent (site-level DP-FedAvg, per region's exports)"),
    )
    for key, who, title in tables:
        if not report[key]:
            continue
        table = Table(title=title)
        for col in ("federation", who, "jurisdiction", "rounds", "ε", "δ", "accountant"):
            table.add_column(col)
        for row in report[key]:
            table.add_row(
                row["federation"],
                row[who],
                row["jurisdiction"],
                str(row["rounds"]),
                f"{row['epsilon']:.3f}" + (f" ({row['unit']})" if "unit" in row else ""),
                f"{row['delta']:g}",
                row["accountant"],
            )
        console.print(table)
    silent = sum(1 for row in report["sites"] if row["ledger"] is None)
    if silent:
        console.print(f"{silent} site(s) of the plan released nothing: ε 0", highlight=False)
    for level in ("jurisdictions", "federations"):
        for name, group in report[level].items():
            line = f"{level[:-1]} {name}: {group['sites']} sites, max ε {group['max_epsilon']:.3f}"
            if "regions" in group:
                line += (
                    f"; {group['regions']} regions, max site-level ε "
                    f"{group['max_site_level_epsilon']:.3f}"
                )
            console.print(line, highlight=False)


def _ledgers_and_plan(ledgers: list[Path], plan: Path | None) -> tuple[list[Path], Path | None]:
    """The ledgers to read, and the plan: a single run folder stands for every ledger
    under it (as ``fedsov audit report`` finds them) and, unless --plan, its plan.toml."""
    if len(ledgers) != 1 or not ledgers[0].is_dir():
        return ledgers, plan
    from fedsov.policy.compliance import find_ledgers

    run = ledgers[0]
    found = find_ledgers(run)[1]
    if not found and plan is None and not (run / "plan.toml").is_file():
        raise ConfigError(
            f"{run}: no privacy ledger found (looked for **/*.privacy-ledger.jsonl and "
            "**/site-level-ledger.jsonl) and no plan.toml"
        )
    if plan is None and (run / "plan.toml").is_file():
        plan = run / "plan.toml"
    return found, plan


def _expected_sites(plan: Path | None) -> tuple[dict[str, str], str]:
    """The plan's edge sites (name -> jurisdiction) and its federation; none without one."""
    if plan is None:
        return {}, ""
    from fedsov.policy.plan import Tier, load_plan

    loaded = load_plan(plan)
    sites = {n.name: n.jurisdiction for n in loaded.nodes if n.tier is Tier.EDGE}
    return sites, loaded.federation
