"""``fedsov audit``: verify a node's ledger, reconcile the two ends of a link, report a run.

Exit codes: 0 intact / no mismatch / compliant, 1 tampered / mismatches / not, 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedsov.cli.errors import err, fail
from fedsov.exceptions import AuditError, PKIError

app = typer.Typer(help="Verify audit ledgers and reconcile links.", no_args_is_help=True)
console = Console(soft_wrap=True)

J = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.callback()
def audit() -> None:
    """Verify audit ledgers and reconcile links."""


@app.command()
def verify(
    ledger: Annotated[Path, typer.Argument(metavar="LEDGER", help="A node's audit ledger.")],
    cert: Annotated[
        list[Path] | None,
        typer.Option(
            "--cert", help="The node's certificate (PEM); repeat for each if it was renewed."
        ),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option("--checkpoints", help="Checkpoints held elsewhere (JSON lines)."),
    ] = None,
    as_json: J = False,
) -> None:
    """Check every record; exit 1 naming the first edited, reordered, removed, forged one."""
    from fedsov.audit import load_certificates, read_checkpoints, verify_ledger

    try:
        certs = [c for path in cert or () for c in load_certificates(path)]
        held = read_checkpoints(checkpoints) if checkpoints is not None else []
        result = verify_ledger(ledger, certificate=certs, checkpoints=held)
    except (AuditError, PKIError) as exc:
        raise fail(exc) from exc
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        who = "" if result.node is None else f" of {result.node} ({result.jurisdiction})"
        head = "" if result.head is None else f", head seq {result.head.seq} {result.head.sha256}"
        if result.finding is None:
            console.print(
                f"ledger OK: {escape(str(ledger))}{who}: {result.records} records{head}; "
                f"{result.checkpoints_checked} checkpoint(s) held elsewhere checked",
                highlight=False,
            )
        else:
            console.print(
                f"[bold red]TAMPERED[/]: {escape(str(ledger))}{who}: {escape(str(result.finding))}",
                highlight=False,
            )
        for note in result.notes:
            console.print(f"note: {escape(note)}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def reconcile(
    ledger_a: Annotated[Path, typer.Argument(metavar="A", help="One end's ledger.")],
    ledger_b: Annotated[Path, typer.Argument(metavar="B", help="The other end's ledger.")],
    as_json: J = False,
) -> None:
    """Compare what each end says it sent with what the other says it received."""
    from fedsov.audit import reconcile as reconcile_ledgers

    try:
        report = reconcile_ledgers(ledger_a, ledger_b)
    except AuditError as exc:
        raise fail(exc) from exc
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        console.print(
            f"link {report.a} <-> {report.b}: {report.matched} transfer(s) match, no mismatch",
            highlight=False,
        )
    else:
        table = Table(
            title=f"link {report.a} <-> {report.b}: {len(report.mismatches)} mismatch(es)"
        )
        for col in ("round", "flow", "kind", "what"):
            table.add_column(col)
        for m in report.mismatches:
            table.add_row(
                "-" if m.round is None else str(m.round), m.flow, str(m.kind), escape(m.message)
            )
        console.print(table)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def head(
    ledger: Annotated[Path, typer.Argument(metavar="LEDGER", help="A node's audit ledger.")],
) -> None:
    """Print a checkpoint (JSON) of an intact ledger's last record, for someone else to hold."""
    from fedsov.audit import verify_ledger

    try:
        result = verify_ledger(ledger)
    except AuditError as exc:
        raise fail(exc) from exc
    if result.finding is not None:
        err.print(f"[bold red]TAMPERED[/]: {escape(str(result.finding))}", highlight=False)
        raise typer.Exit(1)
    if result.head is None:
        raise fail(AuditError(f"audit ledger {ledger} is empty"))
    print(result.head.to_json())


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(metavar="DIR", help="A run folder holding the nodes' ledgers.")
    ],
    plan: Annotated[
        Path | None,
        typer.Option("--plan", help="The federation plan (default: DIR/plan.toml if present)."),
    ] = None,
    pki: Annotated[
        Path | None,
        typer.Option(
            "--pki",
            help="Certificates as FOLDER/<node>/<node>.pem (default: DIR/pki if present).",
        ),
    ] = None,
    as_json: J = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the report to this file instead.")
    ] = None,
) -> None:
    """Compliance report: border crossings vs the plan, ε, refusals, model versions.

    Exit 0 when every ledger verifies and every crossing respects the plan, 1 when not.
    """
    from fedsov.exceptions import FedsovError
    from fedsov.fileio import write_atomic
    from fedsov.policy.compliance import compliance_report, render_json, render_markdown

    try:
        result = compliance_report(run_dir, plan=plan, pki=pki)
    except FedsovError as exc:
        raise fail(exc) from exc
    text = render_json(result) + "\n" if as_json else render_markdown(result)
    if out is None:
        print(text, end="")
    else:
        try:
            write_atomic(out, text.encode())
        except OSError as exc:
            raise fail(AuditError(f"cannot write {out}: {exc.strerror or exc}")) from exc
        verdict = "compliant" if result["ok"] else "[bold red]NOT COMPLIANT[/]"
        console.print(f"wrote {escape(str(out))}: {verdict}", highlight=False)
    if not result["ok"]:
        for problem in result["problems"]:
            err.print(f"problem: {escape(problem)}", highlight=False)
        raise typer.Exit(1)
