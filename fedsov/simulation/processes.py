"""The processes of a simulated federation: spawned, watched, and always stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console

from fedsov.exceptions import FedsovError
from fedsov.exitcodes import GUARDRAIL_EXIT, ExitCode
from fedsov.pki.throwaway import NodePaths

__all__ = ["ProcessGroup", "federated_progress", "tls_table"]


def federated_progress(line: Mapping[str, Any]) -> str:
    """A round's federated evaluation (of the model it started from), for its progress
    line; empty without one."""
    fed = line.get("federated") or {}
    names = [k for k in fed if not k.endswith("/examples")]
    if not names:
        return ""
    values = ", ".join(f"{k} {fed[k]:.3f}" for k in names)
    n = fed[f"{names[0]}/examples"]
    return f"; federated, model {line['round'] - 1} ({n:.0f} examples): {values}"


def tls_table(paths: NodePaths) -> dict[str, str]:
    return {"cert": str(paths.cert), "key": str(paths.key), "ca": str(paths.ca)}


class ProcessGroup:
    """``fedsov`` child processes, one log file each under ``logs/``; stopped on exit.

    Children are left to finish on their own for ``grace`` seconds, then terminated,
    then killed: a simulation never leaves a process behind, pass or fail.
    """

    def __init__(self, logs: Path, *, log_level: str, console: Console) -> None:
        self.logs = logs
        self.log_level = log_level
        self.console = console
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._reported: set[str] = set()
        logs.mkdir(parents=True, exist_ok=True)

    def spawn(
        self, name: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``fedsov ARGS``; ``env`` adds variables. A restart appends to its log."""
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
            **(env or {}),
        )
        with open(self.log(name), "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fedsov", *args, "--log-level", self.log_level],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def wait_for_port(self, name: str, port_file: Path, timeout: float = 120.0) -> int:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_file.exists():
                return int(port_file.read_text().strip())
            if proc.poll() is not None:
                raise FedsovError(
                    f"{name} exited with code {proc.returncode}; see {self.log(name)}"
                )
            time.sleep(0.1)
        raise FedsovError(f"{name} did not start listening within {timeout:.0f} s")

    def report_failures(self) -> None:
        """Say once about each child that exited with an error, or stopped early (a
        guardrail, an operator, a signal: exit codes of fedsov.exitcodes)."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code in (None, 0) or name in self._reported:
                continue
            self._reported.add(name)
            stop = _STOPS.get(code)
            if stop is not None:
                self.console.print(f"{name} stopped: {stop} (exit code {code})", highlight=False)
                continue
            self.console.print(f"[yellow]{name} exited with code {code}; see {self.log(name)}[/]")

    def follow(self, name: str, rounds_log: Path, show: Callable[[dict[str, Any]], None]) -> None:
        """Until ``name`` exits, ``show`` each new line of its rounds log as it is written."""
        proc, seen = self.procs[name], 0
        while True:
            done = proc.poll() is not None
            if rounds_log.exists():
                lines = rounds_log.read_text().splitlines()
                for line in lines[seen:]:
                    if line.strip():
                        show(json.loads(line))
                seen = len(lines)
            self.report_failures()
            if done:
                return
            time.sleep(0.2)

    def stop(self, grace: float = 10.0) -> None:
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> ProcessGroup:
        # SIGTERM ends the run as Ctrl-C does, through __exit__: no node is left running.
        self._on_sigterm: Any = None
        if threading.current_thread() is threading.main_thread():
            self._on_sigterm = signal.signal(signal.SIGTERM, _terminated)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop(grace=0.5 if exc_type is not None else 10.0)
        finally:
            if self._on_sigterm is not None:
                signal.signal(signal.SIGTERM, self._on_sigterm)


# The exit codes of a clean early stop, in words (docs/operations.md).
_STOPS: dict[int, str] = {int(code): f"guardrail {kind}" for kind, code in GUARDRAIL_EXIT.items()}
_STOPS |= {
    int(ExitCode.OPERATOR_STOP): "an operator stopped it",
    int(ExitCode.SIGTERM): "SIGTERM",
    int(ExitCode.SIGINT): "SIGINT",
}


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
