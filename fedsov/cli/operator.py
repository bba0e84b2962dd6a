"""``fedsov status`` and ``fedsov stop``: an operator asks a running node, over mTLS.

The operator's certificate has the role ``operator`` (``fedsov pki csr --role
operator``): the node answers it and nobody else. Exit codes: 0 done, 2 a wrong
config or certificate, or a refused call (the message says which).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from fedsov.cli.errors import fail
from fedsov.exceptions import ConfigError, FedsovError

if TYPE_CHECKING:
    from fedsov.messages import NodeStatus
    from fedsov.transport.operator_client import OperatorClient

__all__ = ["status_command", "stop_command"]

console = Console()
T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="operator.toml: its operator table names address, cert, key, ca."
    ),
]
AddressOpt = Annotated[str | None, typer.Option("--address", help="host:port of the node.")]
CertOpt = Annotated[Path | None, typer.Option("--cert", help="Operator certificate (PEM).")]
KeyOpt = Annotated[Path | None, typer.Option("--key", help="Its private key (PEM).")]
CaOpt = Annotated[Path | None, typer.Option("--ca", help="The federation CA certificate.")]
NameOpt = Annotated[
    str | None,
    typer.Option("--server-name", help="The name the node's certificate carries."),
]


def _connect(
    config: Path | None,
    address: str | None,
    cert: Path | None,
    key: Path | None,
    ca: Path | None,
    server_name: str | None,
) -> Callable[[], OperatorClient]:
    """A client maker from operator.toml, each flag given overriding its value (the
    client is made inside the event loop that uses it: a gRPC channel is bound to one)."""
    from fedsov.config import OperatorFile, load_toml
    from fedsov.pki.tls import load_tls_material
    from fedsov.transport.operator_client import OperatorClient

    if config is not None:
        table = load_toml(OperatorFile, config).operator
        address = address or table.address
        cert, key, ca = cert or table.cert, key or table.key, ca or table.ca
        server_name = server_name or table.server_name
    missing = [
        flag
        for flag, value in (("--address", address), ("--cert", cert), ("--key", key), ("--ca", ca))
        if value is None
    ]
    if missing:
        raise ConfigError(
            f"give --config operator.toml, or {', '.join(missing)} (an operator kit from "
            "`fedsov provision` has an operator.toml)"
        )
    assert address is not None and cert is not None and key is not None and ca is not None
    tls = load_tls_material(cert=cert, key=key, ca=ca)
    if str(tls.identity.role) != "operator":
        console.print(
            f"[yellow]warning: {escape(str(cert))} has role {tls.identity.role}, not operator: "
            "the node will refuse it[/]"
        )
    return lambda: OperatorClient(address, tls, server_name=server_name)


def _call(
    connect: Callable[[], OperatorClient], call: Callable[[OperatorClient], Awaitable[T]]
) -> T:
    """Run one call; a refused or failed RPC becomes the CLI's error (exit 2)."""
    import grpc

    async def run() -> T:
        async with connect() as client:
            return await call(client)

    try:
        return asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        raise fail(f"{exc.code().name}: {exc.details()}") from exc


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(status: NodeStatus) -> Group:
    """The status as a rich header and participants table."""
    total = f"/{status.rounds_total}" if status.rounds_total else ""
    head = Table.grid(padding=(0, 2))
    head.add_row("node", f"{status.node} ({status.role}, {status.jurisdiction or '-'})")
    head.add_row("federation", status.federation)
    head.add_row("state", status.state)
    head.add_row("round", f"{status.round}{total}")
    head.add_row("uptime", f"{status.uptime_s:.0f} s")
    if status.stop_requested:
        head.add_row("stop requested", status.stop_requested)
    last = status.last_report
    if last:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in last.get("metrics", {}).items())
        outcome = "completed" if last.get("completed") else "failed"
        head.add_row(
            "last round",
            f"{last['round']} (attempt {last['attempt']}): {outcome} in {last['seconds']:.1f} s"
            + (f"; {metrics}" if metrics else ""),
        )
    table = Table(title="participants")
    for column in ("name", "jurisdiction", "connected", "last round", "ε", "budget", "ε left"):
        table.add_column(column, justify="right" if column.startswith(("ε", "b")) else "left")
    for p in status.participants:
        left = None if p.budget is None or p.epsilon is None else p.budget - p.epsilon
        table.add_row(
            p.name,
            p.jurisdiction or "-",
            "yes" if p.connected else "no",
            p.last_status or "-",
            _fmt(p.epsilon),
            _fmt(p.budget),
            _fmt(left),
        )
    return Group(head, table)


def status_command(
    config: ConfigOpt = None,
    address: AddressOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    ca: CaOpt = None,
    server_name: NameOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    watch: Annotated[
        float,
        typer.Option("--watch", min=0.0, help="Refresh every this many seconds (0: once)."),
    ] = 0.0,
) -> None:
    """Ask a running coordinator or aggregator what it is doing (operator certificate)."""
    try:
        connect = _connect(config, address, cert, key, ca, server_name)
    except FedsovError as exc:
        raise fail(exc) from exc
    if not watch:
        status = _call(connect, lambda c: c.status())
        if as_json:
            print(json.dumps(status.to_json(), indent=2))
        else:
            console.print(render(status))
        return
    _watch(connect, watch, as_json=as_json)


def _watch(connect: Callable[[], OperatorClient], every: float, *, as_json: bool) -> None:
    """Refresh until Ctrl-C or the node goes away."""
    import grpc
    from rich.live import Live

    async def loop(live: Live | None) -> None:
        async with connect() as client:
            while True:
                status = await client.status()
                if live is None:
                    print(json.dumps(status.to_json()), flush=True)  # one line each: JSON Lines
                else:
                    live.update(render(status))
                if status.state.startswith("finished"):
                    return
                await asyncio.sleep(every)

    try:
        if as_json:
            asyncio.run(loop(None))
        else:
            with Live(console=console, refresh_per_second=4) as live:
                asyncio.run(loop(live))
    except KeyboardInterrupt:
        return
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.UNAVAILABLE:
            console.print(f"[yellow]the node went away at {time.strftime('%H:%M:%S')}[/]")
            return
        raise fail(f"{exc.code().name}: {exc.details()}") from exc


def stop_command(
    config: ConfigOpt = None,
    address: AddressOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    ca: CaOpt = None,
    server_name: NameOpt = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the audit ledger and summary).")
    ] = "asked by an operator",
) -> None:
    """Stop a federation gracefully: the open round closes, state is committed, every
    participant is told; the coordinator exits with code 8."""
    try:
        connect = _connect(config, address, cert, key, ca, server_name)
    except FedsovError as exc:
        raise fail(exc) from exc
    detail = _call(connect, lambda c: c.stop(reason))
    console.print(detail)
