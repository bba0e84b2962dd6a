"""``fedsov site-host``: many site agents in one process (or spread over Ray actors).

What ``fedsov simulate`` runs in virtual mode, one host per worker; usable by hand too
(one edge box serving several sites' configs). Prints one JSON line per site at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from fedsov.cli.errors import fail
from fedsov.config import BACKENDS, SimulationRuntime
from fedsov.exceptions import ConfigError, FedsovError
from fedsov.exitcodes import ExitCode
from fedsov.logging import setup_logging
from fedsov.signals import Stopped, until_signalled

__all__ = ["site_host_command"]


def _configs(configs: list[Path], shard: Path | None) -> list[Path]:
    paths = list(configs)
    if shard is not None:
        try:
            lines = shard.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"--shard {shard}: cannot read it: {exc.strerror}") from None
        paths += [Path(line.strip()) for line in lines if line.strip()]
    if not paths:
        raise ConfigError("no site configs: give CONFIG files or --shard FILE (one per line)")
    if len(set(paths)) != len(paths):
        raise ConfigError("a site config is given twice: each site runs once")
    return paths


def site_host_command(
    configs: Annotated[
        list[Path] | None, typer.Argument(metavar="[CONFIG]...", help="Site config files.")
    ] = None,
    shard: Annotated[
        Path | None, typer.Option("--shard", help="A file listing site configs, one a line.")
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help=f"One of {', '.join(BACKENDS)}.")
    ] = "local",
    workers: Annotated[int, typer.Option("--workers", help="Ray actors (0: one per CPU).")] = 0,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Join this Ray cluster ('auto').")
    ] = None,
    cpus_per_worker: Annotated[float, typer.Option("--cpus-per-worker")] = 1.0,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker")] = 0.0,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Run site agents side by side: each its own certificate, ledger and audit trail."""
    from fedsov.site.host import HostedOutcome, SiteNameFilter, host_sites, load_agents

    setup_logging(log_level.upper(), role="site-host")
    for handler in logging.getLogger().handlers:
        handler.addFilter(SiteNameFilter())
    try:
        paths = _configs(configs or [], shard)
        outcomes: list[HostedOutcome]
        if backend == "local":
            agents = load_agents(paths)
            outcomes = asyncio.run(until_signalled(host_sites(agents)))
        else:
            from fedsov.simulation.ray_hosts import run_ray_hosts

            runtime = SimulationRuntime(
                mode="virtual",
                backend=backend,
                workers=workers,
                ray_address=ray_address,
                cpus_per_worker=cpus_per_worker,
                gpus_per_worker=gpus_per_worker,
            )
            outcomes = run_ray_hosts(paths, runtime, log_level=log_level.upper())
    except FedsovError as exc:
        raise fail(exc) from exc
    except Stopped as exc:
        raise typer.Exit(ExitCode[exc.signal_name]) from None
    for outcome in outcomes:
        print(json.dumps(outcome.as_json()))
    failed = [o for o in outcomes if o.error is not None]
    raise typer.Exit(ExitCode.FAILED if failed else ExitCode.COMPLETED)
