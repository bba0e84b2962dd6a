"""``fedsov provision PLAN --out KITS``: a deployment kit per node of a federation plan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fedsov.cli.errors import err, fail
from fedsov.exceptions import FedsovError
from fedsov.provision import layout
from fedsov.provision.addresses import (
    DEFAULT_BASE_PORT,
    DEFAULT_LISTEN,
    Network,
    parse_assignments,
    parse_ports,
)
from fedsov.provision.readme import CA_WARNING

__all__ = ["provision_cmd"]


def provision_cmd(
    plan_file: Annotated[Path, typer.Argument(help="Federation plan (TOML).", metavar="PLAN")],
    out: Annotated[Path, typer.Option("--out", help="Kits folder: one folder per node.")],
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca",
            help="The federation CA folder (`fedsov pki init`); default: make one in KITS/ca.",
        ),
    ] = None,
    base_port: Annotated[
        int,
        typer.Option("--base-port", help="First server's port, +1 per server; 0: free ports."),
    ] = DEFAULT_BASE_PORT,
    port: Annotated[
        list[str] | None, typer.Option("--port", help="NODE=PORT a server listens on (repeat).")
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="NODE=HOST its participants dial (repeat)."),
    ] = None,
    listen: Annotated[
        str, typer.Option("--listen", help="Host every server binds.")
    ] = DEFAULT_LISTEN,
    demo_data: Annotated[
        bool,
        typer.Option("--demo-data", help="Write each site's share of the plan's simulation data."),
    ] = False,
    operator: Annotated[
        str, typer.Option("--operator", help="Name of the operator's own certificate.")
    ] = "operator",
    force: Annotated[
        bool,
        typer.Option("--force", help="Rewrite kits that hold keys (keys, CSRs, certs are kept)."),
    ] = False,
) -> None:
    """Write a kit per node of PLAN: its config, the plan, the CA certificate, the
    script that makes its key and CSR on the node, and a README; plus the operator's kit."""
    from fedsov.policy.plan import load_plan
    from fedsov.provision.kits import provision

    try:
        plan = load_plan(plan_file)
        network = Network(
            listen=listen,
            base_port=base_port,
            ports=parse_ports(port or []),
            hosts=parse_assignments(host or [], option="--host"),
        )
        writer = None
        if demo_data:
            if plan.simulation is None:
                raise FedsovError(
                    f"{plan_file}: --demo-data needs the plan's [simulation] table "
                    "(which dataset to split over the sites); add one or drop --demo-data"
                )
            from fedsov.simulation.hierarchy import write_plan_data

            writer = write_plan_data
        done = provision(
            plan,
            out,
            network=network,
            ca_dir=ca,
            demo_data=writer,
            force=force,
            operator=operator,
        )
    except FedsovError as exc:
        raise fail(exc) from None
    for kit in done.kits:
        where = f"listens {kit.listen}" if kit.listen else f"dials {kit.dials}"
        err.print(f"  {escape(kit.name)} ({kit.role.value}, {kit.jurisdiction}): {escape(where)}")
    err.print(f"[green]{len(done.kits)} kits written:[/] {escape(str(done.out))}")
    err.print(f"who runs what, and the order to start: {escape(str(done.out / layout.INDEX))}")
    if done.ca_in_kits:
        ca_dir = done.out / layout.CA_DIR
        made = "made a new" if done.ca.created else "used the"
        err.print(
            f"[bold red]WARNING: provision {made} federation CA in {escape(str(ca_dir))}. "
            "That folder is not a kit: it "
            + escape(CA_WARNING.format(key=str(ca_dir / layout.CA_KEY)))
            + "[/]"
        )
