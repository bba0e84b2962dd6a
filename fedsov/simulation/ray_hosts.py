"""Site hosts as Ray actors: ``[simulation] backend = "ray"``.

One Ray actor per site host, each with a resource request (``cpus_per_worker``,
``gpus_per_worker``), so the hosts spread over whatever Ray cluster the driver joins:
``ray_address = None`` starts a Ray instance for the run, ``"auto"`` or
``"host:port"`` joins a running cluster (``ray start --head`` on one machine, more
``ray start --address`` join it). An actor runs :func:`fedsov.site.host.host_sites`
for its share of the sites: the same code a local site host runs.

Ray is an optional extra (``pip install 'fedsov[ray]'``): only this module imports it,
and only when a Ray simulation runs. Every node of the cluster needs fedsov installed and
the run folder at the same path (one machine, or a shared file system): each site reads
its config, certificate and data there and writes its ledgers there.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsov.config import SimulationRuntime
from fedsov.exceptions import ConfigError, FedsovError
from fedsov.site.host import HostedOutcome

__all__ = ["FORWARDED_ENV", "run_ray_hosts", "shard"]

log = logging.getLogger("fedsov.simulation.ray")

# What a hosted site's behaviour depends on in the driver's environment.
FORWARDED_ENV = ("FEDSOV_", "PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def shard(items: Sequence[Path], parts: int) -> list[list[Path]]:
    """``items`` dealt round-robin into at most ``parts`` non-empty lists."""
    parts = max(1, min(parts, len(items)))
    return [list(items[i::parts]) for i in range(parts)]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "[simulation] backend = 'ray' needs Ray: pip install 'fedsov[ray]' "
            "(or set backend = 'local')"
        ) from None
    return ray


class _SiteHost:
    """The actor: one site host in a Ray worker process."""

    def __init__(self, env: dict[str, str], log_level: str) -> None:
        os.environ.update(env)  # before torch loads (OMP_NUM_THREADS) and any site starts
        from fedsov.logging import setup_logging

        setup_logging(log_level, role=f"site-host {os.getpid()}")
        from fedsov.site.host import SiteNameFilter

        for handler in logging.getLogger().handlers:
            handler.addFilter(SiteNameFilter())

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def run(self, configs: list[str]) -> list[dict[str, object]]:
        import asyncio

        from fedsov.site.host import host_sites, load_agents

        agents = load_agents([Path(c) for c in configs])
        return [o.as_json() for o in asyncio.run(host_sites(agents))]


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def run_ray_hosts(
    configs: Sequence[Path], runtime: SimulationRuntime, *, log_level: str = "WARNING"
) -> list[HostedOutcome]:
    """Host ``configs`` on Ray actors until every site is done; the sites' outcomes."""
    ray = _ray()
    started = time.monotonic()
    ray.init(
        address=runtime.ray_address,
        include_dashboard=False,
        log_to_driver=True,
        logging_level=logging.WARNING,
    )
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        workers = runtime.workers or max(1, int(cpus // runtime.cpus_per_worker))
        shards = shard(configs, workers)
        actor = ray.remote(_SiteHost).options(
            num_cpus=runtime.cpus_per_worker, num_gpus=runtime.gpus_per_worker
        )
        hosts = [actor.remote(_forwarded_env(), log_level) for _ in shards]
        nodes = ray.get([h.node.remote() for h in hosts])
        log.warning(
            "Ray: %d site hosts on %d node(s) (%.0f CPUs) for %d sites, ready in %.1f s",
            len(hosts),
            len(set(nodes)),
            cpus,
            len(configs),
            time.monotonic() - started,
        )
        pending = {
            h.run.remote([str(c) for c in part]): i
            for i, (h, part) in enumerate(zip(hosts, shards, strict=True))
        }
        outcomes: list[HostedOutcome] = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                rows = ray.get(done[0])
            except Exception as exc:  # an actor died (or raised): its sites are lost
                names = ", ".join(c.stem for c in shards[index][:5])
                raise FedsovError(f"Ray site host {index} ({names}, ...) failed: {exc}") from exc
            outcomes += [HostedOutcome(**row) for row in rows]
        return outcomes
    finally:
        ray.shutdown()
