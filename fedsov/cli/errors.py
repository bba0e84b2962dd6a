"""How every ``fedsov`` command reports an error: one red line on stderr, exit code 2.

Messages are printed as text, never as Rich markup: a config error naming
``[server]`` or a path with brackets must reach the operator as written.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["err", "fail", "print_error"]

err = Console(stderr=True, soft_wrap=True, highlight=False)


def print_error(message: object) -> None:
    """Print ``error: MESSAGE`` on stderr, the message verbatim."""
    err.print(f"[bold red]error:[/] [red]{escape(str(message))}[/]")


def fail(exc: object) -> typer.Exit:
    """Print ``exc`` and return the exit (code 2) for the caller to raise."""
    print_error(exc)
    return typer.Exit(2)
