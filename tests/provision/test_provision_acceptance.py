"""Acceptance: a federation run from its kits alone, as its operators would run it.

``fedsov provision`` a 3-round consortium (1 coordinator, agg-eu and agg-in, 2 sites
each) with demo data on loopback; in each kit its own request-certificate.sh makes
the key, the operator signs each CSR with the command the kits list, and each node
is started by hand in its kit folder, upstream first, each participant's upstream
address set to the port its upstream wrote (what an operator fills in). The
coordinator must complete the 3 rounds and exit 0. The docs/site-operator.md steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent  # the venv's bin: fedsov and python
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
SERVERS = ("coordinator", "agg-eu", "agg-in")


def fedsov(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [*args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"{args} in {cwd}: {proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def wait_for_port(kit: Path, proc: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 120
    port_file = kit / "port"
    while time.monotonic() < deadline:
        text = port_file.read_text().strip() if port_file.exists() else ""
        if text:
            return int(text)
        assert proc.poll() is None, (
            f"{kit.name} exited {proc.returncode}: {log.read_text()[-3000:]}"
        )
        time.sleep(0.1)
    raise AssertionError(f"{kit.name} did not listen within 120 s")


def set_upstream(kit: Path, port: int) -> None:
    """Fill in the upstream's real port, as the node's operator would."""
    path = kit / "node.toml"
    config: dict[str, Any] = tomllib.loads(path.read_text())
    host = config["upstream"]["address"].rpartition(":")[0]
    config["upstream"]["address"] = f"{host}:{port}"
    path.write_text(tomli_w.dumps(config))


def check_a_site_kit(kit: Path, manifest: dict[str, Any]) -> None:
    """The site operator's checks (docs/site-operator.md), in the kit folder."""
    digest = fedsov("sha256sum", "plan.toml", cwd=kit).split()[0]
    assert digest in (kit / "README.md").read_text()
    assert "plan OK" in fedsov("fedsov", "policy", "check", "plan.toml", cwd=kit)
    shown = fedsov("fedsov", "pki", "show", "paris.pem", cwd=kit)
    assert "paris" in shown and "site" in shown and "EU" in shown
    assert manifest["kits"]["paris"]["start_command"] == ["fedsov", "site", "--config", "node.toml"]


def test_a_federation_runs_from_its_kits(plan_file: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    kits = tmp_path / "kits"
    hosts = [a for s in SERVERS for a in ("--host", f"{s}=127.0.0.1")]
    out = fedsov(
        "fedsov", "provision", str(plan_file), "--out", str(kits), "--demo-data",
        "--base-port", "0", "--listen", "127.0.0.1", *hosts, cwd=tmp_path,
    )  # fmt: skip
    assert "WARNING" in out and "ca.key" in out
    manifest = json.loads((kits / "kits.json").read_text())
    every = manifest["kits"]
    for kit in every.values():  # keys made in each kit, by its own script
        fedsov("sh", "request-certificate.sh", cwd=kits / kit["folder"])
    for name, kit in every.items():  # the consortium operator signs, in the kits folder
        sign = ["fedsov", "pki", "sign", "--ca-dir", "ca", "--csr", f"{name}/{name}.csr.pem"]
        assert kit["sign_command"] == [*sign, "--out", f"{name}/{name}.pem"]
        fedsov(*kit["sign_command"], cwd=kits)
    check_a_site_kit(kits / "paris", manifest)
    keys = sorted(str(p.relative_to(kits)) for p in kits.rglob("*.key"))
    assert keys == sorted(["ca/ca.key", *(f"{n}/{n}.key" for n in every)])
    prepared = time.monotonic() - started

    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = tmp_path / "logs"
    logs.mkdir()
    ports: dict[str, int] = {}
    try:
        for name in manifest["start_order"]:  # upstream first
            kit, folder = every[name], kits / every[name]["folder"]
            if kit["upstream"] is not None:
                set_upstream(folder, ports[kit["upstream"]])
            log = logs / f"{name}.log"
            with open(log, "wb") as sink:
                procs[name] = subprocess.Popen(
                    kit["start_command"], cwd=folder, env=ENV, stdout=sink, stderr=subprocess.STDOUT
                )
            if kit["listen"] is not None:
                ports[name] = wait_for_port(folder, procs[name], log)
        coordinator = procs["coordinator"]
        code = coordinator.wait(timeout=240)
        text = (logs / "coordinator.log").read_text()
        assert code == 0, text[-4000:]
        summary = json.loads(text.strip().splitlines()[-1])
        assert summary["status"] == "completed"
        assert summary["rounds"] == 3
        assert summary["final_accuracy"] is not None  # scored on the kit's data/test.npz
        written = json.loads((kits / "coordinator" / "out" / "summary.json").read_text())
        assert written["status"] == "completed"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in procs.values():
            proc.wait(timeout=30)
    took = time.monotonic() - started
    print(f"provision + keys + certificates {prepared:.1f} s; whole run {took:.1f} s")
