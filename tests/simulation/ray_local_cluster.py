"""A Ray cluster of several nodes on this machine, for the tests of ``backend = "ray"``.

``local_ray_cluster(tmp_path)`` runs ``ray start --head --block`` and then one
``ray start --address=... --block`` per further node, each as a subprocess in its own
session, waits until Ray reports every node alive, and yields the cluster's address
("127.0.0.1:PORT", what ``ray.init(address=...)`` and ``ray_address`` take). Tests import
it the way tests/provision/small_consortium.py is imported (pytest puts a test file's
folder on ``sys.path``; from another folder, insert this one).

Stopping: SIGTERM to each ``ray start`` process group makes it stop its raylet, GCS,
agents and workers (measured: all gone ~3.5 s later, actors included; they stay in its
session). Whatever still runs after a bounded wait is found in /proc (its session, a
marker in its environment, Ray's temp dir in its command line or open files) and killed
by PID. ``cluster_processes(tmp_path)`` lists what is left.

Ray on Linux replaces a node IP of 127.0.0.1 with the machine's routable address and its
gRPC servers listen on every interface (Ray 2.55): the nodes talk over this machine's
own address, which never leaves it, and the test reaches the GCS on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["RAY_ENV", "cluster_processes", "local_ray_cluster", "ray_env"]

# Ray stays offline and quiet: no usage report, no prompt, no log dedup noise.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    # ray.init's FutureWarning about CUDA_VISIBLE_DEVICES for num_gpus=0 tasks (an error
    # under pytest's filterwarnings); "0" takes Ray's announced future behaviour now.
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "PYTHONUNBUFFERED": "1",
}
MARKER = "FEDSOV_TEST_RAY_CLUSTER"  # every process of a cluster inherits it
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # Ray's minimum is 75 MiB
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

PROBE = """
import json, sys, time
import ray
address, want, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
while True:
    alive = len([n for n in ray.nodes() if n["Alive"]])
    if alive >= want or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print(json.dumps({"alive": alive}))
"""


def ray_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the cluster's processes (and of a driver that joins it)."""
    return dict(os.environ, **RAY_ENV, **{MARKER: str(tmp_path.resolve())})


def _ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        raise RuntimeError("no `ray` command beside this Python: pip install 'fedsov[ray]'")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _plasma_args(temp_dir: Path) -> list[str]:
    """The object store in /dev/shm when it has room, else (a small CI /dev/shm) on disk."""
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        free = 0
    return [] if free >= 2 * OBJECT_STORE_BYTES else [f"--plasma-directory={temp_dir}"]


def _node_args(temp_dir: Path, cpus: int) -> list[str]:
    return [
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus}",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        f"--dashboard-agent-listen-port={_free_port()}",  # 52365 on every node otherwise
        *_plasma_args(temp_dir),
    ]


def _wait_for_port(port: int, procs: list[subprocess.Popen[bytes]], deadline: float) -> None:
    while time.monotonic() < deadline:
        if procs[0].poll() is not None:
            return  # the head exited: the caller reports its log
        with socket.socket() as sock, suppress(OSError):
            sock.settimeout(0.5)
            sock.connect(("127.0.0.1", port))
            return
        time.sleep(0.2)


def _alive_nodes(address: str, want: int, env: dict[str, str], deadline: float) -> tuple[int, str]:
    """How many nodes Ray reports alive, polled until ``want`` or the deadline; stderr."""
    left = max(deadline - time.monotonic(), 1.0)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, address, str(want), str(left)],
            capture_output=True,
            text=True,
            timeout=left + 30,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 0, "the probe did not return"
    if proc.returncode != 0:
        return 0, proc.stderr[-1500:]
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["alive"]), proc.stderr[-500:]


def _tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def _temp_dir(tmp_path: Path) -> Path:
    """Ray's temp dir for this cluster: short (socket paths), and found again from tmp_path."""
    digest = hashlib.sha256(str(tmp_path.resolve()).encode()).hexdigest()[:12]
    base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    return base / f"ray-{digest}"


def _belongs(entry: Path, marker: bytes, temp_dir: str, sessions: set[int]) -> bool:
    """Whether /proc/PID is a live process of the cluster.

    Four signs, since Ray's processes rename themselves (setproctitle overwrites the
    argv and environ of ray::DashboardAgent and the like): the marker in its environment,
    Ray's temp dir in its command line or among its open files, or the session of one of
    the ``ray start`` processes.
    """
    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    if stat[0] == "Z":
        return False  # exited; only its parent's wait is missing
    if int(stat[3]) in sessions or marker in (entry / "environ").read_bytes().split(b"\0"):
        return True
    if temp_dir.encode() in (entry / "cmdline").read_bytes():
        return True
    with suppress(OSError):
        for fd in (entry / "fd").iterdir():
            with suppress(OSError):
                if os.readlink(fd).startswith(temp_dir):
                    return True
    return False


def cluster_processes(tmp_path: Path, sessions: Iterable[int] = ()) -> list[int]:
    """PIDs of the live processes of the cluster started for ``tmp_path``."""
    marker = f"{MARKER}={tmp_path.resolve()}".encode()
    temp_dir, own = str(_temp_dir(tmp_path)), set(sessions)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with suppress(OSError, IndexError, ValueError):  # gone meanwhile, or not ours
            if _belongs(entry, marker, temp_dir, own):
                found.append(int(entry.name))
    return sorted(found)


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stop(procs: list[subprocess.Popen[bytes]], tmp_path: Path) -> list[int]:
    """Stop every node (workers first, the head last); the PIDs that would not die."""
    sessions = [proc.pid for proc in procs]  # each `ray start` leads its own session
    for proc in reversed(procs):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    # A process that left the session (or outlived its `ray start`): by PID.
    while (left := cluster_processes(tmp_path, sessions)) and time.monotonic() < deadline:
        _signal(left, signal.SIGTERM)
        time.sleep(0.2)
    for proc in procs:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _signal(cluster_processes(tmp_path, sessions), signal.SIGKILL)
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    time.sleep(0.2)
    return cluster_processes(tmp_path, sessions)


@contextmanager
def local_ray_cluster(tmp_path: Path, nodes: int = 2, cpus_per_node: int = 1) -> Iterator[str]:
    """A Ray cluster of ``nodes`` nodes on this machine; yields its address, host:port.

    Logs of each ``ray start`` are in ``tmp_path/ray-node-N.log``. Ray's own temp dir is a
    short folder under the system temp dir (its unix sockets' paths must stay under ~107
    characters), named after ``tmp_path`` and removed afterwards.
    """
    env = ray_env(tmp_path)
    temp_dir = _temp_dir(tmp_path)
    temp_dir.mkdir(mode=0o700, exist_ok=True)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    ray = _ray_executable()
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"ray-node-{i}.log" for i in range(nodes)]
    head = [
        ray, "start", "--head", f"--port={port}", "--include-dashboard=false",
        f"--ray-client-server-port={_free_port()}", f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        for i, log in enumerate(logs):
            cmd = head if i == 0 else [ray, "start", f"--address={address}"]
            # the head's autoscaler serves metrics on 44217 unless told otherwise
            node_env = dict(env, AUTOSCALER_METRIC_PORT=str(_free_port())) if i == 0 else env
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [*cmd, *_node_args(temp_dir, cpus_per_node)],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=node_env,
                        start_new_session=True,
                    )
                )
            if i == 0:
                _wait_for_port(port, procs, deadline)
        alive, detail = _alive_nodes(address, nodes, env, deadline)
        if alive < nodes:
            exited = {i: p.returncode for i, p in enumerate(procs) if p.poll() is not None}
            raise RuntimeError(
                f"Ray cluster at {address}: {alive} of {nodes} nodes alive after "
                f"{START_TIMEOUT_S:.0f} s (exited `ray start`s: {exited}).\nprobe: {detail}\n"
                + "\n".join(f"--- {log.name}\n{_tail(log)}" for log in logs)
            )
        yield address
    finally:
        survivors = _stop(procs, tmp_path)
        shutil.rmtree(temp_dir, ignore_errors=True)
        if survivors:
            raise RuntimeError(f"Ray processes survived SIGKILL: {survivors}")
