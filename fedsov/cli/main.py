"""The ``fedsov`` command line: the roles, simulate, pki, policy, privacy, audit, models."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fedsov import __version__
from fedsov.cli.audit import app as audit_app
from fedsov.cli.errors import err, fail
from fedsov.cli.health import health
from fedsov.cli.models import app as models_app
from fedsov.cli.operator import status_command, stop_command
from fedsov.cli.pki import app as pki_app
from fedsov.cli.policy import app as policy_app
from fedsov.cli.privacy import app as privacy_app
from fedsov.cli.provision import provision_cmd
from fedsov.cli.report import report_command
from fedsov.cli.site_host import site_host_command
from fedsov.exceptions import FedsovError
from fedsov.exitcodes import ExitCode
from fedsov.logging import parse_level, setup_logging
from fedsov.signals import Stopped, until_signalled

app = typer.Typer(
    name="fedsov",
    help="Sovereign federated learning: mTLS gRPC coordinator, DP-SGD sites, simulations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(pki_app, name="pki", help="Federation CA, CSRs and node certificates.")
app.add_typer(policy_app, name="policy", help="Check a federation plan against its policy.")
app.add_typer(privacy_app, name="privacy", help="Privacy accounting: ε, and noise for a target ε.")
app.add_typer(audit_app, name="audit", help="Verify audit ledgers, reconcile both ends of links.")
app.add_typer(models_app, name="models", help="Global model versions: list, lineage, export.")
app.command(name="report")(report_command)
app.command("provision")(provision_cmd)  # a kit per node of a plan
app.command("status")(status_command)  # an operator asks a running node (mTLS)
app.command("stop")(stop_command)  # and stops its federation gracefully
app.command()(health)  # a container probe: is this node's own server SERVING?
app.command("site-host")(site_host_command)  # many sites in one process (virtual sites)


ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="TOML config file.")]
InsecureOpt = Annotated[
    bool,
    typer.Option("--insecure", help="Plaintext gRPC without certificates. Local development ONLY."),
]


def _log_level(value: str) -> str:
    try:
        return parse_level(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


LogOpt = Annotated[
    str,
    typer.Option("--log-level", callback=_log_level, help="DEBUG, INFO, WARNING or ERROR."),
]

INSECURE_WARNING = (
    "[bold red]WARNING: --insecure: no TLS, no client certificates, identities are "
    "unauthenticated. Never use this outside local development.[/]"
)


def _warn_if_insecure(flag: bool, tls: object | None) -> bool:
    """Print the loud warning when TLS is off (by flag or config); returns the flag."""
    if flag or tls is None:
        err.print(INSECURE_WARNING)
    return flag


def exit_code(summary: Mapping[str, object]) -> int:
    """A run's exit status from its summary (docs/operations.md): its ``stop``'s (a
    guardrail, an operator, a signal), else 0 when it completed and 1 when it failed."""
    stop = summary.get("stop")
    code = stop.get("exit_code") if isinstance(stop, Mapping) else None
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return ExitCode.COMPLETED if summary.get("status") == "completed" else ExitCode.FAILED


def _version(value: bool) -> None:
    if value:
        print(f"fedsov {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """fedsov command line."""


@app.command()
def coordinator(
    config: ConfigOpt, insecure: InsecureOpt = False, log_level: LogOpt = "INFO"
) -> None:
    """Run the global aggregator until every round has run."""
    from dataclasses import replace

    from fedsov.coordinator import config as coordinator_config
    from fedsov.coordinator.app import Coordinator

    setup_logging(log_level, role="coordinator")
    try:
        cfg = coordinator_config.load(config)
        if _warn_if_insecure(insecure, cfg.server.tls):
            cfg = replace(cfg, server=replace(cfg.server, tls=None))
        summary = asyncio.run(Coordinator(cfg).run())
    except FedsovError as exc:
        raise fail(exc) from exc
    keys = ("status", "rounds", "final_accuracy", "model_sha256", "stop")
    print(json.dumps({k: summary[k] for k in keys if k in summary}))
    raise typer.Exit(exit_code(summary))


@app.command()
def site(config: ConfigOpt, insecure: InsecureOpt = False, log_level: LogOpt = "INFO") -> None:
    """Run a site agent: dial out to the upstream and train on local data with DP-SGD."""
    from dataclasses import replace

    from fedsov.site import config as site_config
    from fedsov.site.agent import SiteAgent

    setup_logging(log_level, role="site")
    try:
        cfg = site_config.load(config)
        if _warn_if_insecure(insecure, cfg.upstream.tls):
            cfg = replace(cfg, upstream=replace(cfg.upstream, tls=None))
        agent = SiteAgent(cfg)
        outcome = asyncio.run(until_signalled(agent.run()))
    except FedsovError as exc:
        raise fail(exc) from exc
    except Stopped as exc:  # an upload in flight was abandoned; the ledger is on disk
        logging.getLogger("fedsov.site").warning("%s", exc)
        print(json.dumps({"status": str(exc), "rounds_trained": agent.rounds_trained}))
        raise typer.Exit(ExitCode[exc.signal_name]) from None
    print(json.dumps({"rounds_trained": outcome.rounds_trained, "epsilon": outcome.epsilon}))


@app.command()
def aggregator(
    config: ConfigOpt, insecure: InsecureOpt = False, log_level: LogOpt = "INFO"
) -> None:
    """Run a regional aggregator: serve the region's sites, export their aggregate upstream."""
    from dataclasses import replace

    from fedsov.aggregator import config as aggregator_config
    from fedsov.aggregator.app import RegionalAggregator

    setup_logging(log_level, role="aggregator")
    try:
        cfg = aggregator_config.load(config)
        if _warn_if_insecure(insecure, cfg.server.tls):
            cfg = replace(
                cfg,
                server=replace(cfg.server, tls=None),
                upstream=replace(cfg.upstream, tls=None),
            )
        summary = asyncio.run(until_signalled(RegionalAggregator(cfg).run()))
    except FedsovError as exc:
        raise fail(exc) from exc
    except Stopped as exc:  # state committed, summary written: a restart resumes
        logging.getLogger("fedsov.aggregator").warning("%s", exc)
        raise typer.Exit(ExitCode[exc.signal_name]) from None
    print(json.dumps({k: summary[k] for k in ("status", "exported_rounds", "declined_rounds")}))
    if summary["status"] != "completed":
        raise typer.Exit(1)


@app.command()
def simulate(
    scenario: Annotated[
        Path, typer.Argument(help="Scenario TOML, e.g. simulations/quickstart.toml.")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default runs/<name>).")
    ] = None,
    log_level: LogOpt = "WARNING",
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="Sites as OS processes ('process') or 'virtual' sites."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="Virtual sites' hosts: 'local' or 'ray'.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Site hosts (0: two per core / per Ray CPU).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Join this Ray cluster ('auto').")
    ] = None,
) -> None:
    """Run a whole federation on this machine: real processes, real mTLS gRPC over loopback.

    SCENARIO is a flat scenario (like simulations/quickstart.toml) or a federation plan
    with [[nodes]] (like simulations/consortium.toml), which runs every tier. The
    scenario's [simulation] says where sites run (mode, backend, workers); the options
    override it.
    """
    from fedsov.simulation.scenario import is_plan
    from fedsov.simulation.sites import override

    given = {"mode": mode, "backend": backend, "workers": workers, "ray_address": ray_address}
    try:
        if is_plan(scenario):
            from fedsov.policy.check import check_plan
            from fedsov.policy.plan import load_plan
            from fedsov.simulation.hierarchy import run_plan_simulation

            plan = load_plan(scenario)
            violations = check_plan(plan)
            if violations:
                for v in violations:
                    err.print(f"[red]{escape(f'{v.node}: {v.rule}: {v.reason}')}[/]")
                raise FedsovError(
                    f"{scenario} breaks its own policy; see `fedsov policy check {scenario}`"
                )
            runtime = override(plan.simulation.runtime() if plan.simulation else None, given)
            summary = run_plan_simulation(
                plan, out or Path("runs") / plan.federation, log_level=log_level, runtime=runtime
            )
        else:
            from fedsov.simulation.launcher import run_simulation
            from fedsov.simulation.scenario import load_scenario

            sc = load_scenario(scenario)
            summary = run_simulation(
                sc,
                out or Path("runs") / sc.name,
                log_level=log_level,
                runtime=override(sc.runtime, given),
            )
    except FedsovError as exc:
        raise fail(exc) from exc
    raise typer.Exit(exit_code(summary))  # the coordinator's: completed, failed, stopped by ...


def main() -> None:
    """The ``fedsov`` command. Once a command has returned (its state closed, its
    files fsynced, its output written), the process ends without the interpreter's
    teardown: with torch loaded that took 0.6-0.7 s after every run."""
    try:
        app()
    except KeyboardInterrupt:
        code: int | str | None = 130
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if isinstance(code, str):  # SystemExit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        code = 1
    with contextlib.suppress(OSError):  # a reader that went away
        sys.stdout.flush()
        sys.stderr.flush()
    logging.shutdown()
    os._exit(code or 0)
