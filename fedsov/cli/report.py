"""``fedsov report``: write a run folder's figures as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fedsov.cli.errors import fail

__all__ = ["report_command"]

console = Console(soft_wrap=True, highlight=False)


def report_command(
    run_dir: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR", help="A run folder (the --out of `fedsov simulate`)."),
    ],
    html: Annotated[
        Path | None,
        typer.Option("--html", help="The page to write (default: RUN_DIR/report.html)."),
    ] = None,
) -> None:
    """Figures of a run as one HTML page: accuracy, ε vs budgets, participation, hierarchy.

    The page is self-contained (figures inline as PNG): open it in any browser,
    offline. `fedsov audit report RUN_DIR` is the compliance report beside it.
    """
    from fedsov.exceptions import FedsovError
    from fedsov.report import write_report

    out = html if html is not None else run_dir / "report.html"
    try:
        drawn = write_report(run_dir, out)
    except FedsovError as exc:
        raise fail(exc) from exc
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror or exc}") from exc
    shown = [s.title.lower() for s in drawn if s.png is not None]
    console.print(
        f"wrote {escape(str(out))}: {len(shown)} figure(s)"
        + (f" ({', '.join(shown)})" if shown else ""),
    )
