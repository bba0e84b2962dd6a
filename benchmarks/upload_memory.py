"""Coordinator memory while many sites upload updates of a large model at once.

Starts a real `fedsov coordinator` process (mTLS, one round) for a ~10M-parameter
MLP, connects N sites from this process (each with its own certificate and
channel), lets every site download the model, then has all of them upload a
full-size update at the same moment. The coordinator's memory is sampled every
20 ms from /proc: RssAnon (memory it allocated) and VmRSS (plus pages of shared
libraries such as torch's, touched for the first time).

    .venv/bin/python benchmarks/upload_memory.py [--sites 50] [--hidden 10000] [--strategy fedavg]

Target (issue 2): growth above the idle baseline < 4x the model's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from fedsov.codec import EncodedTensors, encode
from fedsov.messages import PrivacyReport, TrainTask, UpdateHeader
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.transport.client import FederationClient

MiB = 2**20


def memory(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            out[key] = int(rest.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                sample = memory(self.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            if len(sample) < 2:  # exited: a zombie has no memory fields
                return
            self.samples.append((time.monotonic(), sample))
            time.sleep(0.02)

    def peak(self, key: str, start: float = 0.0, end: float = float("inf")) -> int:
        return max(m[key] for t, m in self.samples if start <= t <= end)


@dataclass
class Shared:
    """What the simulated sites share: one update payload, and the start signal."""

    ready: asyncio.Barrier
    go: asyncio.Event = field(default_factory=asyncio.Event)
    update: EncodedTensors | None = None


async def site(address: str, paths: NodePaths, shared: Shared) -> float:
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    async with FederationClient(address, tls=tls, server_name="localhost") as client:
        await client.join(device="cpu")
        events = client.tasks()
        task = None
        async for event in events:
            if isinstance(event, TrainTask):
                task = event
                break
        assert task is not None
        await client.download(task.model_sha256, size=task.model_size)
        if shared.update is None:
            rng = np.random.default_rng(0)
            shared.update = encode(
                {
                    s.name: (rng.standard_normal(s.shape) * 1e-3).astype(np.float32)
                    for s in task.manifest.tensors
                }
            )
        update = shared.update
        await shared.ready.wait()
        await shared.go.wait()
        header = UpdateHeader.answering(
            task,
            update,
            num_examples=100,
            privacy=PrivacyReport(enabled=True, epsilon=1.0, delta=1e-5),
        )
        t0 = time.monotonic()
        await client.upload(header, bytes(update.payload))
        seconds = time.monotonic() - t0
        async for _ in events:  # until Finished
            pass
        return seconds


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fedsov-bench-"))
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1"))]
    nodes += [NodeSpec(f"site-{i}", Role.site, "EU") for i in range(args.sites)]
    pki = build_pki(work / "pki", federation="bench", nodes=nodes)
    c = pki["coordinator"]
    config = {
        "federation": {"name": "bench", "seed": 0},
        "server": {
            "address": "127.0.0.1:0",
            "port_file": str(work / "port"),
            "cert": str(c.cert),
            "key": str(c.key),
            "ca": str(c.ca),
            "max_concurrent_transfers": args.transfers,
        },
        "model": {
            "factory": "fedsov.simulation.models:mlp",
            "kwargs": {"in_features": 1000, "hidden": args.hidden, "num_classes": 10},
        },
        "rounds": {"num_rounds": 1, "min_sites": args.sites, "timeout_s": 600.0},
        "strategy": {"name": args.strategy},
        "output": {"dir": str(work / "out")},
    }
    (work / "coordinator.toml").write_text(tomli_w.dumps(config))
    with open(work / "coordinator.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fedsov",
                "coordinator",
                "--config",
                str(work / "coordinator.toml"),
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while not (work / "port").exists():
            if proc.poll() is not None:
                raise SystemExit(f"coordinator died; see {work / 'coordinator.log'}")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # initial model saved, server idle
        sampler = Sampler(proc.pid)
        sampler.start()
        await asyncio.sleep(0.5)
        idle = memory(proc.pid)
        address = f"127.0.0.1:{(work / 'port').read_text().strip()}"
        shared = Shared(asyncio.Barrier(args.sites + 1))
        tasks = [
            asyncio.create_task(site(address, pki[f"site-{i}"], shared)) for i in range(args.sites)
        ]
        await shared.ready.wait()
        await asyncio.sleep(0.5)
        before_uploads = memory(proc.pid)
        t0 = time.monotonic()
        shared.go.set()
        seconds = await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
        t_uploaded = t0 + max(seconds)
        proc.wait(120)
        sampler.stop.set()
        sampler.join()
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((work / "out" / "summary.json").read_text())
    assert shared.update is not None
    model = shared.update.size
    result: dict[str, Any] = {
        "sites": args.sites,
        "parameters": model // 4,
        "model_mib": round(model / MiB, 1),
        "max_concurrent_transfers": args.transfers,
        "strategy": args.strategy,
        "round_completed": summary["rounds"] == 1,
        "contributors": sum(1 for s in summary["sites"].values() if s["rounds_contributed"]),
        "upload_wall_s": round(elapsed, 2),
        "aggregate_upload_mib_s": round(args.sites * model / MiB / elapsed, 1),
    }
    for key, label in (("RssAnon", "anon"), ("VmRSS", "rss")):
        peak_uploading = sampler.peak(key, t0, t_uploaded)
        peak = sampler.peak(key)
        result |= {
            f"{label}_idle_mib": round(idle[key] / MiB, 1),
            f"{label}_after_downloads_mib": round(before_uploads[key] / MiB, 1),
            f"{label}_peak_while_uploading_mib": round(peak_uploading / MiB, 1),
            f"{label}_peak_incl_commit_mib": round(peak / MiB, 1),
            f"{label}_growth_x_model": round((peak - idle[key]) / model, 2),
        }
    result["target_met_anon"] = (sampler.peak("RssAnon") - idle["RssAnon"]) < 4 * model
    result["target_met_rss"] = (sampler.peak("VmRSS") - idle["VmRSS"]) < 4 * model
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument(
        "--hidden", type=int, default=10_000, help="MLP width (10000: ~10.1M params)"
    )
    parser.add_argument(
        "--transfers", type=int, default=4, help="coordinator's concurrent transfers"
    )
    parser.add_argument("--strategy", default="fedavg", help="[strategy] name of the round")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
