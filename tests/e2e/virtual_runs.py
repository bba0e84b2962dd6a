"""Running ``fedsov simulate`` in a test and reading what it left (virtual-site tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

__all__ = ["final_model", "max_abs_diff", "run"]


def run(
    scenario: Path, out: Path, *options: str, env: Mapping[str, str] | None = None
) -> dict[str, object]:
    """``fedsov simulate`` as a user runs it (seeded selection); its summary."""
    env = dict(env or os.environ, FEDSOV_INSECURE_REPRODUCIBLE="1")
    cmd = [sys.executable, "-m", "fedsov", "simulate", str(scenario), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 0, stderr[-3000:]
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return summary


def final_model(out: Path) -> dict[str, np.ndarray]:
    return load_file(str(sorted((out / "models").glob("round-*.safetensors"))[-1]))


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[key] - b[key]))) for key in a)
