"""Child processes of one benchmark run: started with a log file each, watched, and
killed by PID (with every descendant) however the run ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "MIN_FREE_MB",
    "Group",
    "LogWatch",
    "PeakMemory",
    "RunFailed",
    "free_ports",
    "mem_available_mb",
]

MIN_FREE_MB = 2048  # a run stops starting processes below this much available memory


class RunFailed(Exception):
    """One run of one system did not finish; the message says why (it goes in the table)."""


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free now (for programs that cannot take port 0)."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now (a detached grandchild included)."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def _peak_rss_kb(pid: int) -> int:
    """VmHWM: the process's peak resident memory so far (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Group:
    """The processes of one run; ``kill()`` ends each of them and their descendants."""

    def __init__(self, logs: Path, env: Mapping[str, str]) -> None:
        self.logs = logs
        self.env = dict(env)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, float] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def require_memory(self, needed_mb: float = 0.0) -> None:
        """RunFailed unless ``needed_mb`` more would leave MIN_FREE_MB available."""
        free = mem_available_mb()
        if free - needed_mb < MIN_FREE_MB:
            what = f"{needed_mb:.0f} MB more needed, " if needed_mb else ""
            raise RunFailed(
                f"memory: {what}{free:.0f} MB available with {len(self.procs)} processes "
                f"running; the benchmark keeps {MIN_FREE_MB} MB free"
            )

    def start(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        self.require_memory()
        with open(self.log(name), "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.procs[name] = proc
        self.started[name] = time.time()
        return proc

    def wait(self, name: str, timeout: float) -> float:
        """Until ``name`` exits; returns the time it exited. RunFailed after ``timeout``."""
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        checked = 0.0
        while proc.poll() is None:
            now = time.monotonic()
            if now > deadline:
                raise RunFailed(f"timed out after {timeout:.0f} s ({name} still running)")
            if now - checked > 0.5:
                self.require_memory()
                checked = now
            time.sleep(0.01)
        return time.time()

    def check_alive(self, names: Sequence[str]) -> None:
        for name in names:
            code = self.procs[name].poll()
            if code is not None:
                raise RunFailed(f"{name} exited with status {code}: see {self.log(name)}")

    def kill(self) -> None:
        """SIGKILL every process of this run and its descendants, by PID, then reap."""
        pids = [p for proc in self.procs.values() for p in descendants(proc.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)


class LogWatch(threading.Thread):
    """The time at which ``marker`` first appeared in each log (polled every 20 ms)."""

    def __init__(self, logs: Mapping[str, Path], marker: str) -> None:
        super().__init__(daemon=True)
        self.logs, self.marker = dict(logs), marker.encode()
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.seen) < len(self.logs):
            for name, path in self.logs.items():
                if name not in self.seen and self.marker in _read(path):
                    self.seen[name] = time.time()
            time.sleep(0.02)

    def wait_all(self, timeout: float, group: Group) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < len(self.logs):
            group.require_memory()
            if time.monotonic() > deadline:
                raise RunFailed(
                    f"only {len(self.seen)} of {len(self.logs)} sites joined in {timeout:.0f} s"
                )
            time.sleep(0.05)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


class PeakMemory(threading.Thread):
    """Peak resident memory of one process tree: at each sample (every 100 ms), the
    VmHWM of each process alive in the tree, summed (a Flower node is a SuperNode, a
    SuperExec and a ClientApp process per message); the largest such sum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.tree_kb = 0
        self.root_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.1)

    def sample(self) -> None:
        peaks = {pid: _peak_rss_kb(pid) for pid in descendants(self.pid)}
        self.tree_kb = max(self.tree_kb, sum(peaks.values()))
        self.root_kb = max(self.root_kb, peaks.get(self.pid, 0))

    @property
    def tree_mb(self) -> float:
        return self.tree_kb / 1024
