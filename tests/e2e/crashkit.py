"""A small federation of real processes whose coordinator can be killed and restarted.

Sites are started once and keep running; the coordinator is started, killed (by a
crash point or by the test) and started again with the same config on the same port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from fedsov.config import write_toml
from fedsov.faults import ENV as CRASH_ENV
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki
from fedsov.simulation.datasets import load_digits
from fedsov.simulation.processes import tls_table
from fedsov.site.data import save_npz

MODEL = {"factory": "fedsov.simulation.models:mlp", "kwargs": {"in_features": 64, "hidden": 16}}


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop(CRASH_ENV, None)
    return env | (extra or {})


class Federation:
    """``sites`` site processes and one coordinator process at a time, under ``out``."""

    def __init__(
        self,
        out: Path,
        *,
        sites: int = 3,
        rounds: int = 5,
        timeout_s: float = 30.0,
        min_sites: int | None = None,
    ) -> None:
        self.out = out
        self.min_sites = min_sites or sites
        self.min_updates = self.min_sites
        self.names = [f"site-{i}" for i in range(1, sites + 1)]
        nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1"))]
        nodes += [NodeSpec(n, Role.site, "EU") for n in self.names]
        self.pki: dict[str, NodePaths] = build_pki(out / "pki", federation="crash", nodes=nodes)
        self.rounds, self.timeout_s = rounds, timeout_s
        self.port: int | None = None
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.sites: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = 0
        digits = load_digits()
        for i, name in enumerate(self.names):
            save_npz(out / "data" / f"{name}.npz", digits.subset(np.arange(i * 120, (i + 1) * 120)))

    @property
    def coordinator_out(self) -> Path:
        return self.out / "coordinator"

    def _coordinator_config(self) -> Path:
        address = f"127.0.0.1:{self.port or 0}"
        return write_toml(
            self.out / "configs" / "coordinator.toml",
            {
                "federation": {"name": "crash", "seed": 5},
                "server": {
                    "address": address,
                    "port_file": str(self.out / "coordinator.port"),
                    **tls_table(self.pki["coordinator"]),
                },
                "model": MODEL,
                "rounds": {
                    "num_rounds": self.rounds,
                    "min_sites": self.min_sites,
                    "min_updates": self.min_updates,
                    "timeout_s": self.timeout_s,
                    "start_timeout_s": 120.0,
                    "max_attempts": 3,
                },
                "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.5},
                "output": {"dir": str(self.coordinator_out)},
                "heartbeat_s": 1.0,
            },
        )

    def start_coordinator(self, crash_at: str | None = None) -> subprocess.Popen[bytes]:
        """Start the coordinator (on the port of its first start); wait until it listens."""
        port_file = self.out / "coordinator.port"
        port_file.unlink(missing_ok=True)
        config = self._coordinator_config()
        self.starts += 1
        log = open(self.out / f"coordinator-{self.starts:02d}.log", "wb")  # noqa: SIM115
        env = _env({CRASH_ENV: crash_at} if crash_at else None)
        self.coordinator = subprocess.Popen(
            [sys.executable, "-m", "fedsov", "coordinator", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if self.coordinator.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"coordinator did not start: {self.log_tail()}")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        return self.coordinator

    def start_sites(
        self,
        names: Sequence[str] | None = None,
        *,
        ports: dict[str, int] | None = None,
        crash_at: dict[str, str] | None = None,
    ) -> None:
        """Start sites; ``ports``: a site's upstream port if not the coordinator's (a proxy);
        ``crash_at``: its crash point."""
        assert self.port is not None
        for name in names or self.names:
            p = self.pki[name]
            port = (ports or {}).get(name, self.port)
            config = write_toml(
                self.out / "configs" / f"{name}.toml",
                {
                    "site": {"name": name, "seed": 100 + self.names.index(name), "device": "cpu"},
                    "upstream": {
                        "address": f"127.0.0.1:{port}",
                        "server_name": "localhost",
                        **tls_table(p),
                    },
                    "data": {"path": str(self.out / "data" / f"{name}.npz")},
                    "model": MODEL,
                    "privacy": {"enabled": False},
                    "reconnect": {
                        "initial_backoff_s": 0.1,
                        "max_backoff_s": 0.5,
                        "max_attempts": 0,
                    },
                },
            )
            with open(self.out / f"{name}.log", "ab") as log:
                self.sites[name] = subprocess.Popen(
                    [sys.executable, "-m", "fedsov", "site", "--config", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=_env(
                        {CRASH_ENV: crash_at[name]} if crash_at and name in crash_at else None
                    ),
                )

    def wait_coordinator(self, timeout: float = 180.0) -> int:
        assert self.coordinator is not None
        try:
            return self.coordinator.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"coordinator still running: {self.log_tail()}") from None

    def kill_coordinator(self) -> None:
        assert self.coordinator is not None
        self.coordinator.send_signal(signal.SIGKILL)
        self.coordinator.wait(30)

    def wait_for_log(self, text: str, timeout: float = 120.0) -> None:
        """Until the running coordinator's log holds ``text``."""
        log = self.out / f"coordinator-{self.starts:02d}.log"
        deadline = time.monotonic() + timeout
        while text not in log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the coordinator log: {self.log_tail()}")
            time.sleep(0.02)

    def log_tail(self, lines: int = 30) -> str:
        text = (self.out / f"coordinator-{self.starts:02d}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def final_model(self) -> dict[str, np.ndarray]:
        import json

        summary: dict[str, Any] = json.loads((self.coordinator_out / "summary.json").read_text())
        return dict(safetensors.numpy.load_file(summary["model_file"]))

    def stop(self) -> None:
        """Every process this federation started is gone when this returns."""
        procs = [*self.sites.values(), *([self.coordinator] if self.coordinator else [])]
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait(30)


class CuttableLink:
    """A TCP forwarder on 127.0.0.1:0 to ``target_port`` whose links can be cut.

    ``cut()`` shuts every open connection and refuses new ones (each is closed at
    once) until ``restore()``: to the site behind it, the network dropped.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._sockets -= {source, sink}

    def cut(self) -> None:
        self.up = False
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # its pumps then close it

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self._listener.close()
