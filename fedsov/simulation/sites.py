"""Starting a simulation's sites: a process each, or virtual sites in a few site hosts.

``mode = "process"``: ``fedsov site --config`` per site, as a deployment runs them.
``mode = "virtual"``: the sites are dealt round-robin to site hosts (``fedsov
site-host``), two per core by default, each multiplexing its sites' sessions; with
``backend = "ray"`` one driver process places the hosts on a Ray cluster as actors.
Either way every site keeps its own config, certificate, ledgers and audit trail, and
the coordinator and aggregators see the same mTLS connections, one per site.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fedsov.config import SimulationRuntime
from fedsov.simulation.processes import ProcessGroup
from fedsov.simulation.ray_hosts import shard

__all__ = ["HOSTS_PER_CORE", "describe", "local_workers", "override", "start_sites"]

HOSTS_PER_CORE = 2  # a host waits on the network between trainings; two keep a core busy


def override(runtime: SimulationRuntime | None, given: Mapping[str, Any]) -> SimulationRuntime:
    """``runtime`` (the scenario's) with the command line's non-None values; asking for
    the Ray backend implies virtual sites."""
    values = {k: v for k, v in given.items() if v is not None}
    if values.get("backend") == "ray" or values.get("ray_address") is not None:
        values.setdefault("mode", "virtual")
        values.setdefault("backend", "ray")
    return dataclasses.replace(runtime or SimulationRuntime(), **values)


def describe(runtime: SimulationRuntime) -> str:
    """Where the sites run, in words."""
    if runtime.mode == "process":
        return "a process per site"
    hosts = f"{runtime.workers} site hosts" if runtime.workers else "site hosts"
    return f"virtual sites in {hosts}" + (" on Ray" if runtime.backend == "ray" else "")


def local_workers(runtime: SimulationRuntime, sites: int) -> int:
    """How many local site hosts: ``workers``, or two per usable core; never more than sites."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    wanted = runtime.workers or HOSTS_PER_CORE * (cores or 1)
    return max(1, min(wanted, sites))


def _write_shard(path: Path, configs: Sequence[Path]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{c}\n" for c in configs))
    return path


def start_sites(
    group: ProcessGroup,
    configs: Mapping[str, Path],
    runtime: SimulationRuntime,
    *,
    hosts_dir: Path,
    env: Mapping[str, str] | None = None,
) -> str:
    """Start the sites of ``configs`` ({site: config file}) the way ``runtime`` says;
    what was started, in words."""
    if runtime.mode == "process":
        for name, cfg in configs.items():
            group.spawn(name, "site", "--config", str(cfg), env=env)
        return f"{len(configs)} site processes started"
    files = list(configs.values())
    if runtime.backend == "ray":
        args = ["--backend", "ray", "--workers", str(runtime.workers)]
        args += ["--cpus-per-worker", str(runtime.cpus_per_worker)]
        args += ["--gpus-per-worker", str(runtime.gpus_per_worker)]
        if runtime.ray_address is not None:
            args += ["--ray-address", runtime.ray_address]
        shard_file = _write_shard(hosts_dir / "ray.txt", files)
        group.spawn("site-hosts-ray", "site-host", "--shard", str(shard_file), *args, env=env)
        return f"{len(files)} virtual sites handed to Ray (log: site-hosts-ray.log)"
    parts = shard(files, local_workers(runtime, len(files)))
    for i, part in enumerate(parts, start=1):
        shard_file = _write_shard(hosts_dir / f"host-{i}.txt", part)
        group.spawn(f"site-host-{i}", "site-host", "--shard", str(shard_file), env=env)
    return f"{len(files)} virtual sites started in {len(parts)} site hosts"
