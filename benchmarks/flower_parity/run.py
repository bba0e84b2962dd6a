"""examples/flower-app in fedsov (simulations/flower.toml without DP) beside the same
app in Flower's own simulation: same partitions, rounds, FedAvg and test set.

    python benchmarks/flower_parity/run.py --seeds 0,1,2 --out runs/flower_parity

For each seed: ``fedsov simulate`` of simulations/flower.toml with ``[privacy]
enabled = false`` and that seed (processes, mTLS, two regional aggregators), then
flower_sim.py (``flwr.simulation.run_simulation``, Ray) on the partitions and the
test set fedsov wrote, with FedAvg over all four nodes and the plan's training
settings. Flower's simulation needs Ray: ``pip install -e '.[flower-sim]'`` (or put
a Ray 2.55.1 on PYTHONPATH). Prints and writes ``table.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PLAN = REPO / "simulations" / "flower.toml"
APP = REPO / "examples" / "flower-app"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=None, help="default: the plan's")
    p.add_argument("--out", type=Path, default=Path("runs/flower_parity"))
    return p.parse_args()


def no_dp_plan(seed: int, rounds: int | None, path: Path) -> dict[str, Any]:
    """simulations/flower.toml with DP off, ``seed``, and absolute paths; written to ``path``."""
    plan = tomllib.loads(PLAN.read_text(encoding="utf-8"))
    plan["federation"]["seed"] = seed
    plan["privacy"] = {"enabled": False}
    if rounds is not None:
        plan["rounds"]["num_rounds"] = rounds
    trainer = plan["simulation"]["trainer"]
    trainer["app_dir"] = str(APP)
    for key in ("dp", "update_clip", "update_noise_multiplier"):
        trainer.pop(key, None)
    path.write_text(tomli_w.dumps(plan), encoding="utf-8")
    return plan


def run_fedsov(plan_file: Path, out: Path) -> float:
    """``fedsov simulate``; the final test accuracy."""
    proc = subprocess.run(
        [sys.executable, "-m", "fedsov", "simulate", str(plan_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"fedsov simulate failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return float(summary["final_accuracy"])


def fedsov_partitions(out: Path, data_dir: Path) -> Path:
    """Link each site's NPZ as ``part-<partition-id>.npz`` (the ids fedsov gave the
    app) in ``data_dir``; returns the test set's file."""
    data_dir.mkdir(parents=True)
    test: Path | None = None
    for config_file in sorted((out / "configs").glob("*.toml")):
        config = tomllib.loads(config_file.read_text(encoding="utf-8"))
        node = config.get("trainer", {}).get("node_config")
        if node is None:
            continue
        source = Path(node["data-path"])
        (data_dir / f"part-{node['partition-id']}.npz").symlink_to(source)
        test = source.parent / "test.npz"
    if test is None or not test.exists():
        raise SystemExit(f"no site configs with a Flower trainer under {out / 'configs'}")
    return test


def run_flower(plan: dict[str, Any], data_dir: Path, test: Path, seed: int, out: Path) -> float:
    """flower_sim.py in its own process (Ray's workers die with it); the final accuracy."""
    training = plan["training"]
    train_config = {
        "local-epochs": training["local_epochs"],
        "batch-size": training["batch_size"],
        "learning-rate": training["learning_rate"],
    }
    nodes = len(list(data_dir.glob("part-*.npz")))
    paths = [str(APP), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, paths)),
        FLOWER_APP_DATA_DIR=str(data_dir),
        FLWR_TELEMETRY_ENABLED="0",
        OMP_NUM_THREADS="1",
    )
    command = [
        sys.executable,
        str(HERE / "flower_sim.py"),
        *("--nodes", str(nodes), "--rounds", str(plan["rounds"]["num_rounds"])),
        *("--test", str(test), "--seed", str(seed), "--out", str(out)),
        *("--train-config", json.dumps(train_config)),
    ]
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=900)
    finally:
        # Ray's raylet and workers are in this session: kill them all by group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if code != 0:
        raise SystemExit(f"Flower's simulation failed (exit {code})")
    return float(json.loads(out.read_text(encoding="utf-8"))["accuracy"][-1])


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # through run_flower's finally: Ray is killed too


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    args = _args()
    seeds = [int(s) for s in args.seeds.split(",")]
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SystemExit("Flower's simulation needs Ray: pip install -e '.[flower-sim]'") from None
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        work = args.out / f"seed-{seed}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        plan = no_dp_plan(seed, args.rounds, work / "plan.toml")
        say(f"seed {seed}: fedsov simulate")
        fedsov_acc = run_fedsov(work / "plan.toml", work / "fedsov")
        test = fedsov_partitions(work / "fedsov", work / "flower-data")
        say(f"seed {seed}: fedsov {fedsov_acc:.4f}; Flower's simulation")
        flower_acc = run_flower(plan, work / "flower-data", test, seed, work / "flower.json")
        say(f"seed {seed}: Flower {flower_acc:.4f}")
        rows.append({"seed": seed, "fedsov": fedsov_acc, "flower": flower_acc})
    table = _table(rows, rounds=plan["rounds"]["num_rounds"])
    (args.out / "results.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    (args.out / "table.md").write_text(table, encoding="utf-8")
    print(table)


def _table(rows: list[dict[str, Any]], *, rounds: int) -> str:
    def stat(key: str) -> str:
        values = [r[key] for r in rows]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {sd:.4f}"

    gap = statistics.mean(r["fedsov"] - r["flower"] for r in rows)
    lines = [
        f"examples/flower-app, {rounds} rounds, FedAvg, no DP, {len(rows)} seeds",
        "",
        "| seed | fedsov simulate | flwr run_simulation |",
        "|---|---|---|",
        *(f"| {r['seed']} | {r['fedsov']:.4f} | {r['flower']:.4f} |" for r in rows),
        f"| mean ± sd | {stat('fedsov')} | {stat('flower')} |",
        "",
        f"mean difference (fedsov - Flower): {100 * gap:+.2f} points",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
