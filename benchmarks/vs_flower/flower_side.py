"""One Flower run: ``flower-superlink`` + one ``flower-supernode`` per site + ``flwr run``
of the no-op app in ``flower_app/``, all from Flower's own venv (the version the
project's pyproject pins), insecure: Flower's TLS is server-side only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import tomli_w
from cases import Case, shapes_for
from packaging.requirements import Requirement
from packaging.version import Version
from procs import Group, LogWatch, PeakMemory, RunFailed, free_ports
from results import RunResult

__all__ = ["VENV", "ensure_flower", "run_flower"]

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-flower"
APP = HERE / "flower_app"
NODE_MB = 300  # resident: a SuperNode (~170 MB) + its SuperExec (~130 MB), measured here


def flower_requirement() -> Requirement:
    """The ``flwr`` requirement in the project's pyproject.toml (e.g. ``flwr>=1.41,<1.42``)."""
    project = tomllib.loads((HERE.parents[1] / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        req = Requirement(dep)
        if req.name == "flwr":
            return req
    raise SystemExit("pyproject.toml pins no flwr version")


def _installed(python: Path) -> Version | None:
    if not python.exists():
        return None
    out = subprocess.run(
        [str(python), "-c", "import flwr, numpy; print(flwr.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return Version(out.stdout.strip()) if out.returncode == 0 else None


def ensure_flower(say: Callable[[str], None] = print) -> Path:
    """Flower's venv, created (``python -m venv`` + pip) unless it holds a pinned version."""
    req = flower_requirement()
    python = VENV / "bin" / "python"
    have = _installed(python)
    if have is not None and have in req.specifier:
        return VENV
    say(f"setting up Flower ({req}) in {VENV} (about a minute)")
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(req), "numpy"],
        check=True,
    )
    have = _installed(python)
    if have is None or have not in req.specifier:
        raise SystemExit(f"{VENV}: flwr {have} installed, {req} wanted")
    return VENV


def _env(home: Path) -> dict[str, str]:
    bin_dir = str(VENV / "bin")  # the SuperLink and SuperNodes start flower-superexec
    return dict(
        os.environ,
        PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )


def _wait_for(group: Group, name: str, marker: bytes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while marker not in group.log(name).read_bytes():
        group.check_alive([name])
        if time.monotonic() > deadline:
            raise RunFailed(f"{name} did not start within {timeout:.0f} s")
        time.sleep(0.05)


def _run_config(case: Case, rounds: int, timestamps: Path) -> str:
    shapes = ";".join(",".join(str(d) for d in s) for s in shapes_for(case.params))
    return (
        f'num-server-rounds={rounds} num-nodes={case.sites} shapes="{shapes}" '
        f'timestamps-file="{timestamps}"'
    )


def run_flower(case: Case, rounds: int, work: Path, result: RunResult) -> None:
    """Fill ``result``; raises RunFailed (the caller records why) when the run fails."""
    home = work / "flwr-home"
    link_port, *node_ports = free_ports(1 + case.sites)
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        tomli_w.dumps(
            {
                "superlink": {
                    "default": "bench",
                    "bench": {"address": f"127.0.0.1:{link_port}", "insecure": True},
                }
            }
        )
    )
    app = work / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    timestamps = work / "rounds.jsonl"
    bin_dir = VENV / "bin"
    group = Group(work / "logs", _env(home))
    started = time.monotonic()
    names = [f"node-{i}" for i in range(case.sites)]
    try:
        group.require_memory(case.sites * (NODE_MB + 3 * case.model_mb))
        group.start(
            "superlink",
            [
                str(bin_dir / "flower-superlink"),
                "--insecure",
                f"--port={link_port}",
                "--disable-runtime-dependency-installation",
            ],
        )
        _wait_for(group, "superlink", b"Uvicorn running", 120.0)
        watch = LogWatch({n: group.log(n) for n in names}, "SuperNode ID:")
        watch.start()
        for name, port in zip(names, node_ports, strict=True):
            group.start(
                name,
                [
                    str(bin_dir / "flower-supernode"),
                    "--insecure",
                    f"--superlink=127.0.0.1:{link_port}",
                    f"--port={port}",
                ],
            )
        memory = PeakMemory(group.procs[names[0]].pid)
        memory.start()
        watch.wait_all(case.timeout_s, group)
        group.start(
            "flwr-run",
            [
                str(bin_dir / "flwr"),
                "run",
                str(app),
                "bench",
                "--stream",
                "--run-config",
                _run_config(case, rounds, timestamps),
            ],
        )
        result.server_exit = group.wait("flwr-run", case.timeout_s - (time.monotonic() - started))
        if (code := group.procs["flwr-run"].returncode) != 0:
            raise RunFailed(f"flwr run exited with status {code}")
        memory.stop.set()
        memory.sample()
        result.startup_s = [watch.seen[n] - group.started[n] for n in names]
        result.site_rss_mb = memory.tree_mb
        result.round_closes = _round_closes(timestamps, case.sites, rounds)
    finally:
        group.kill()
        result.wall_s = time.monotonic() - started


def _round_closes(timestamps: Path, sites: int, rounds: int) -> list[float]:
    """The ServerApp's close time of each round; RunFailed if a round lost replies."""
    if not timestamps.exists():
        raise RunFailed("the ServerApp recorded no round")
    rows = [json.loads(line) for line in timestamps.read_text().splitlines()]
    for row in rows:
        if row["replies"] != sites:
            raise RunFailed(f"round {row['round']}: {row['replies']} of {sites} replies")
    if len(rows) != rounds:
        raise RunFailed(f"{len(rows)} of {rounds} rounds closed")
    return [float(row["closed"]) for row in rows]
