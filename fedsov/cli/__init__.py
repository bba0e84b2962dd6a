"""The ``fedsov`` command line: one typer app (``main``) with a sub-app per area."""

from fedsov.cli.main import app, main

__all__ = ["app", "main"]
