"""One fedsov run: a real ``fedsov coordinator`` process with mTLS and one no-op site
process per site, certificates from ``fedsov.pki`` in a temporary directory."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import tomli_w
from cases import Case, shapes_for
from procs import Group, LogWatch, PeakMemory, RunFailed
from results import RunResult

from fedsov.pki import NodeSpec, Role, build_pki

__all__ = ["run_fedsov"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# "2026-12-02 01:21:43,804 INFO [coordinator] round 3 closed: 10/10 updates accepted"
ROUND_CLOSED = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*\bround (\d+) closed\b")
SITE_MB = 80  # a no-op site at a tiny model (ru_maxrss), measured here
PEAK = re.compile(rb"peak_rss_kb=(\d+) torch_imported=(\w+)")


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def _coordinator_config(work: Path, case: Case, rounds: int, pki: Path) -> Path:
    c = pki / "coordinator"
    config = {
        "federation": {"name": "vsflower", "seed": 0},
        "server": {
            "address": "127.0.0.1:0",
            "port_file": str(work / "coordinator.port"),
            "cert": str(c / "coordinator.pem"),
            "key": str(c / "coordinator.key"),
            "ca": str(c / "ca.pem"),
        },
        "model": {"factory": "bench_model:zeros", "kwargs": {"shapes": shapes_for(case.params)}},
        "rounds": {
            "num_rounds": rounds,
            "min_sites": case.sites,
            "timeout_s": case.timeout_s,
            "start_timeout_s": case.timeout_s,
            "max_attempts": 1,
        },
        "output": {"dir": str(work / "coordinator-out")},
    }
    path = work / "coordinator.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def _round_closes(log: Path) -> list[float]:
    closes = []
    for line in log.read_bytes().splitlines():
        m = ROUND_CLOSED.match(line)
        if m:
            stamp = time.mktime(time.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S"))
            closes.append(stamp + int(m.group(2)) / 1000)
    return closes


def _wait_port(group: Group, port_file: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        group.check_alive(["coordinator"])
        if time.monotonic() > deadline:
            raise RunFailed(f"the coordinator did not listen within {timeout:.0f} s")
        time.sleep(0.05)
    return int(port_file.read_text())


def run_fedsov(case: Case, rounds: int, work: Path, result: RunResult) -> None:
    """Fill ``result``; raises RunFailed (the caller records why) when the run fails."""
    names = [f"site-{i}" for i in range(case.sites)]
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1"))]
    nodes += [NodeSpec(n, Role.site, "EU") for n in names]
    build_pki(work / "pki", federation="vsflower", nodes=nodes)
    config = _coordinator_config(work, case, rounds, work / "pki")
    group = Group(work / "logs", _env())
    started = time.monotonic()
    try:
        group.start(
            "coordinator", [sys.executable, "-m", "fedsov", "coordinator", "-c", str(config)]
        )
        port = _wait_port(group, work / "coordinator.port", 120.0)
        watch = LogWatch({n: group.log(n) for n in names}, "joined federation")
        watch.start()
        for name in names:
            d = work / "pki" / name
            group.start(
                name,
                [
                    sys.executable,
                    str(HERE / "noop_site.py"),
                    f"--address=127.0.0.1:{port}",
                    f"--name={name}",
                    f"--cert={d / f'{name}.pem'}",
                    f"--key={d / f'{name}.key'}",
                    f"--ca={d / 'ca.pem'}",
                    f"--audit={work / f'{name}.audit.jsonl'}",
                ],
            )
        memory = PeakMemory(group.procs[names[0]].pid)
        memory.start()
        result.server_exit = group.wait("coordinator", case.timeout_s)
        memory.stop.set()
        if (code := group.procs["coordinator"].returncode) != 0:
            raise RunFailed(f"the coordinator exited with status {code}")
        for name in names:  # each prints its peak RSS as it exits
            group.wait(name, 30.0)
        watch.stop.set()
        result.startup_s = [watch.seen[n] - group.started[n] for n in names if n in watch.seen]
        result.site_rss_mb = memory.tree_mb
        result.site_self_rss_mb = _site_rss(group, names)
        result.round_closes = _round_closes(group.log("coordinator"))
        if len(result.round_closes) != rounds:
            raise RunFailed(f"{len(result.round_closes)} of {rounds} rounds closed")
    finally:
        group.kill()
        result.wall_s = time.monotonic() - started


def _site_rss(group: Group, names: list[str]) -> list[float]:
    """Each site's printed ru_maxrss (MB); RunFailed if one imported torch."""
    out = []
    for name in names:
        m = PEAK.search(group.log(name).read_bytes())
        if m is None:
            raise RunFailed(f"{name} printed no peak RSS: see {group.log(name)}")
        if m.group(2) != b"False":
            raise RunFailed(f"{name} imported torch")
        out.append(int(m.group(1)) / 1024)
    return out
