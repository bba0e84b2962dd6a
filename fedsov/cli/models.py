"""``fedsov models``: list a federation's global models, show one with its lineage, export one.

Exit codes: 0 done, 2 bad input (no such folder or model, damaged blob).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import click
import typer
from rich import box
from rich.console import Console
from rich.markup import escape

from fedsov.cli.errors import fail
from fedsov.exceptions import ConfigError, StateError

if TYPE_CHECKING:
    from fedsov.models.registry import ModelRegistry
    from fedsov.models.version import ModelVersion

app = typer.Typer(help="Global model versions: list, lineage, export.", no_args_is_help=True)
console = Console()

Out = Annotated[
    Path,
    typer.Argument(metavar="OUT", help="Output folder of a coordinator or regional aggregator."),
]
Model = Annotated[
    str,
    typer.Argument(
        metavar="MODEL", help="'latest', a round number, or 6+ hex digits of the model's SHA-256."
    ),
]
J = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.callback()
def models() -> None:
    """Global model versions: list, lineage, export."""


def _open(out_dir: Path) -> ModelRegistry:
    from fedsov.models.registry import ModelRegistry

    try:
        return ModelRegistry.open(out_dir)
    except StateError as exc:
        raise fail(exc) from exc


@app.command("list")
def list_command(out_dir: Out, as_json: J = False) -> None:
    """Every model version, round 0 first."""
    from rich.table import Table

    versions = _open(out_dir).versions()
    if as_json:
        print(json.dumps([v.to_dict() for v in versions], indent=2))
        return
    if not versions:
        print(f"{out_dir}: no models yet")
        return
    with_accuracy = any(v.accuracy is not None for v in versions)
    table = Table(title=f"models in {escape(str(out_dir))}", box=box.SIMPLE_HEAD, show_edge=False)
    for column in ("round", "sha256", "parent", "contributors", "sites"):
        table.add_column(column, no_wrap=True)
    if with_accuracy:
        table.add_column("accuracy", no_wrap=True)
    for v in versions:
        row = [str(v.round), v.sha256[:16], (v.parent or "-")[:16]]
        row += [str(len(v.contributors)), str(len(v.sites))]
        if with_accuracy:
            row.append("-" if v.accuracy is None else f"{v.accuracy:.4f}")
        table.add_row(*row)
    console.print(table)


@app.command()
def show(out_dir: Out, model: Model, as_json: J = False) -> None:
    """Everything recorded about one model, and its lineage back to round 0."""
    registry = _open(out_dir)
    try:
        version = registry.resolve(model)
        chain = registry.lineage(version.sha256)
    except (ConfigError, StateError) as exc:
        raise fail(exc) from exc
    lineage = [{"round": v.round, "sha256": v.sha256} for v in chain]
    if as_json:
        print(json.dumps(version.to_dict() | {"lineage": lineage}, indent=2))
        return
    chained = " <- ".join(f"round {v.round} {v.sha256[:16]}" for v in chain)
    for key, value in [*_describe(version), ("lineage", chained)]:
        print(f"{key:<19} {value}")


def _describe(v: ModelVersion) -> list[tuple[str, str]]:
    return [
        ("model", v.sha256),
        ("round", str(v.round)),
        ("parent", v.parent or "- (initial model)"),
        ("file", f"models/{v.file}"),
        ("created", v.created or "-"),
        ("plan", v.plan_sha256 or "-"),
        ("contributors", _items(v.contributors)),
        ("sites", _items(v.sites)),
        ("regions", _items(v.regions)),
        ("ε (sample-level)", _pairs(v.epsilon)),
        ("ε (site-level)", _pairs(v.site_level_epsilon)),
        ("metrics", _pairs(v.metrics)),
        *((key, json.dumps(value)) for key, value in v.extra.items()),
    ]


def _items(values: Iterable[str]) -> str:
    return ", ".join(values) or "-"


def _pairs(values: Mapping[str, object]) -> str:
    return _items(f"{k}={x:.4g}" if isinstance(x, float) else f"{k}={x}" for k, x in values.items())


@app.command()
def export(
    out_dir: Out,
    model: Model,
    dest: Annotated[Path, typer.Option("--out", help="The file to write.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            click_type=click.Choice(["safetensors", "torch"]),
            help="safetensors (the verified blob) or torch (a state dict for torch.load); "
            "default: torch for .pt/.pth files, safetensors otherwise.",
        ),
    ] = None,
) -> None:
    """Write one model to a file, once its blob is checked to hash to its SHA-256."""
    from fedsov.models.export import ExportFormat, export_model

    registry = _open(out_dir)
    try:
        version = registry.resolve(model)
        written = export_model(
            registry, version.sha256, dest, None if fmt is None else ExportFormat(fmt)
        )
    except (ConfigError, StateError) as exc:
        raise fail(exc) from exc
    what = f"the model of round {version.round} ({version.sha256[:16]})"
    print(f"exported {what} to {dest} as {written}")
