"""``fedsov simulate`` stopped by SIGTERM stops every node it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_simulate import SCENARIO


def _nodes_of(out: Path) -> list[int]:
    """PIDs of the processes whose command line names ``out`` (the run's nodes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(out).encode() in cmdline and b"--config" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.e2e
def test_sigterm_stops_the_simulation_and_every_node(tmp_path: Path) -> None:
    scenario = tmp_path / "e2e.toml"
    scenario.write_text(SCENARIO.replace("num_rounds = 8", "num_rounds = 200"))
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsov", "simulate", str(scenario), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nodes: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(nodes) < 4 and time.monotonic() < deadline:  # the coordinator and 3 sites
            assert proc.poll() is None, "the simulation ended before it was stopped"
            time.sleep(0.2)
            nodes = _nodes_of(out)
        assert len(nodes) == 4, nodes
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) != 0
        deadline = time.monotonic() + 30
        while _nodes_of(out) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _nodes_of(out) == []
    finally:
        for pid in [proc.pid, *nodes]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)
