"""fedsov's virtual sites beside Flower's simulation engine: same data, model, rounds, one table.

    python benchmarks/vs_flower/simulation.py --sites 1000 --per-round 100 --rounds 5 \\
        --out runs/vs_flower_sim
    python benchmarks/vs_flower/simulation.py --sites 20 --per-round 5 --rounds 3 --systems flower

The partitions are written once (``fedsov.simulation.data_prep.write_site_data``: FedProx
Synthetic IID pool split with Dirichlet label skew, or digits; one NPZ per site) and
then, each in a fresh temporary directory and its own session, every process killed by
PID at its end:

- **Flower**: sim_flower.py, ``flwr.simulation.run_simulation`` (Ray backend, one CPU
  per client by default) with ``--sites`` SuperNodes; node ``partition-id`` i trains on
  site-<i+1>'s NPZ with fedsov's model and plain SGD (sim_flower_client.py); Flower's
  ``FedAvg`` with ``fraction_train`` = per-round / sites; central evaluation on the test
  NPZ after each round. A round is timed between two central evaluations.
- **fedsov**: ``fedsov simulate`` of a flat scenario with the same ``[data]``, model,
  training and seed, ``sites_per_round`` = per-round, DP off, ``[simulation] mode =
  "virtual"`` (``--fedsov-backend`` local or ray). Rounds are timed by the coordinator
  (``rounds.jsonl``'s ``seconds``); its partitions are checked equal to the ones Flower got.

"Time to first round" is from launching the process to the first round's close (start-up,
data loading, Ray, PKI and all); the first round is reported alone, then the median of the
others. Prints a markdown table; writes ``table.md`` and ``results.json`` to ``--out``.
Needs Ray (``pip install -c constraints.txt 'fedsov[ray]'``) for Flower's side.

Results (2-core dev machine shared with other jobs, load 3-10; 2026-12-02; 1,000 sites,
100 per round, 10 rounds, synthetic, logistic, 1 epoch, batch 32, lr 0.1; ranges over
three runs, Flower 1.41 + Ray 2.55.1, one Ray CPU per client)::

                              Flower run_simulation   fedsov simulate (virtual, local)
    time to first round       9.2 - 15.5 s            12.8 - 29.9 s
    first round alone         7.4 - 13.7 s            4.2 - 16.4 s
    round, median of 2..10    0.56 - 0.96 s           0.84 - 1.16 s
    final test accuracy       0.4773                  0.4773

fedsov's slowest start (29.9 s) ran at load 10. ``--fedsov-backend ray`` (a local Ray
for the site hosts): 15.8 s to the first round, 0.84 s a round. Flower with half a CPU
per client: 0.54 s a round.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SYSTEMS = ("flower", "fedsov")
DATASETS = {"synthetic": 60, "digits": 64}  # name: input features
BACKENDS = ("local", "ray")
QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}

__all__ = ["Result", "check_args", "markdown", "parse_args", "round_stats", "scenario"]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sites", type=int, default=1000)
    p.add_argument("--per-round", type=int, default=100, help="sites trained per round")
    p.add_argument("--rounds", type=int, default=5, help="the first is reported alone")
    p.add_argument("--dataset", default="synthetic", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--fedsov-backend", default="local", help="local or ray")
    p.add_argument("--flower-cpus", type=float, default=1.0, help="Ray CPUs per Flower client")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per system")
    p.add_argument("--out", type=Path, default=Path("runs/vs_flower_sim"))
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    return p


def check_args(args: argparse.Namespace) -> list[str]:
    """What is wrong with ``args`` (empty when nothing is)."""
    problems = []
    if args.sites < 1:
        problems.append("--sites must be at least 1")
    if not 1 <= args.per_round <= max(args.sites, 1):
        problems.append(f"--per-round must be between 1 and --sites ({args.sites})")
    if args.rounds < 2:
        problems.append("--rounds must be at least 2: the first round is reported alone")
    if args.dataset not in DATASETS:
        problems.append(f"--dataset: unknown {args.dataset!r}; use {' or '.join(DATASETS)}")
    if args.alpha <= 0 or args.lr <= 0 or args.epochs < 1 or args.batch_size < 1:
        problems.append("--alpha and --lr must be positive, --epochs and --batch-size >= 1")
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown or not args.systems:
        problems.append(f"--systems: unknown {', '.join(sorted(unknown))}; use flower,fedsov")
    if args.fedsov_backend not in BACKENDS:
        problems.append(f"--fedsov-backend must be local or ray, not {args.fedsov_backend!r}")
    if args.flower_cpus <= 0:
        problems.append("--flower-cpus must be positive")
    return problems


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    problems = check_args(args)
    if problems:
        parser.error("; ".join(problems))
    return args


def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """The flat scenario ``fedsov simulate`` runs (its [data] also makes Flower's partitions)."""
    data: dict[str, Any] = {"dataset": args.dataset, "partition": "dirichlet"}
    data |= {"alpha": args.alpha, "test_fraction": 0.2, "sites": args.sites}
    return {
        "name": "vs-flower-sim",
        "seed": args.seed,
        "data": data,
        "model": {
            "factory": "fedsov.simulation.models:logistic",
            "kwargs": {"in_features": DATASETS[args.dataset], "num_classes": 10},
        },
        "rounds": {
            "num_rounds": args.rounds,
            "min_sites": args.per_round,
            "sites_per_round": args.per_round,
            "timeout_s": 600,
        },
        "training": {
            "local_epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
        },
        "privacy": {"enabled": False},
        "simulation": {"mode": "virtual", "backend": args.fedsov_backend},
    }


@dataclass
class Result:
    """One system's run. ``round_s``: every round's seconds, the first included."""

    system: str
    why: str = ""  # why it did not finish; empty when it did
    time_to_first_round_s: float | None = None
    round_s: list[float] = field(default_factory=list)
    final_accuracy: float | None = None
    peak_rss_mb: float | None = None  # the process tree's summed VmHWM (overstates shared)
    wall_s: float = 0.0
    note: str = ""

    def summary(self) -> dict[str, Any]:
        return asdict(self) | round_stats(self.round_s)


def round_stats(round_s: Sequence[float]) -> dict[str, float | None]:
    """The first round alone, and the median of the others."""
    return {
        "first_round_s": round_s[0] if round_s else None,
        "round_s_median": statistics.median(round_s[1:]) if len(round_s) > 1 else None,
    }


def _median(result: Result) -> float | None:
    return round_stats(result.round_s)["round_s_median"]


def _cell(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(args: argparse.Namespace, results: Sequence[Result], data_s: float) -> str:
    """The comparison table, one column per system, and how it was run."""
    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("time to first round (s)", lambda r: _cell(r.time_to_first_round_s, 1)),
        ("first round (s)", lambda r: _cell(round_stats(r.round_s)["first_round_s"])),
        ("round, median of rounds 2+ (s)", lambda r: _cell(_median(r))),
        ("final test accuracy", lambda r: _cell(r.final_accuracy, 4)),
        ("peak RSS, process tree (MB)", lambda r: _cell(r.peak_rss_mb, 0)),
        ("wall (s)", lambda r: _cell(r.wall_s, 1)),
    ]  # fmt: skip
    names = {
        "flower": "Flower run_simulation (Ray)",
        "fedsov": f"fedsov simulate (virtual, {args.fedsov_backend})",
    }
    lines = [
        f"{args.sites} sites, {args.per_round} per round, {args.rounds} rounds; {args.dataset} "
        f"(Dirichlet α={args.alpha}), logistic model, {args.epochs} epoch(s), batch "
        f"{args.batch_size}, lr {args.lr}, FedAvg, DP off; {os.cpu_count()} CPUs. "
        f"Partitions written once in {data_s:.1f} s.",
        "",
        "| | " + " | ".join(names[r.system] for r in results) + " |",
        "|---|" + "---|" * len(results),
        *(f"| {label} | " + " | ".join(f(r) for r in results) + " |" for label, f in rows),
    ]
    notes = [f"- {r.system}: {r.why or r.note}" for r in results if r.why or r.note]
    return "\n".join([*lines, "", *notes, ""] if notes else [*lines, ""])


# --- running -----------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        out.append(p := todo.pop())
        todo.extend(children.get(p, []))
    return out


def _peak_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class _Run:
    """One system's process in its own session: watched, sampled, killed by PID."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.launched = time.time()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.log, self.peak_kb = log, 0

    def sample(self) -> None:
        self.peak_kb = max(self.peak_kb, sum(_peak_kb(p) for p in _descendants(self.proc.pid)))

    def wait(self, timeout: float, until: Any = None) -> int:
        """Until the process exits (sampling memory); ``until()`` is polled meanwhile."""
        deadline, sampled = time.monotonic() + timeout, 0.0
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"still running after {timeout:.0f} s; see {self.log}")
            if until is not None:
                until()
            if time.monotonic() - sampled > 0.5:
                self.sample()
                sampled = time.monotonic()
            time.sleep(0.05)
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL the process, its descendants (Ray's raylet, workers...) and its session."""
        for pid in _descendants(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:]


def _env(**extra: str) -> dict[str, str]:
    paths = [str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, **QUIET_ENV, PYTHONPATH=os.pathsep.join(filter(None, paths)), **extra)


def run_flower(args: argparse.Namespace, data_dir: Path, test: Path, work: Path) -> Result:
    result = Result("flower")
    features = DATASETS[args.dataset]
    settings = {
        "data_dir": str(data_dir),
        "model": {"name": "logistic", "kwargs": {"in_features": features, "num_classes": 10}},
        "local_epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
    }
    out = work / "flower.json"
    argv = [
        sys.executable, str(HERE / "sim_flower.py"),
        "--sites", str(args.sites), "--per-round", str(args.per_round),
        "--rounds", str(args.rounds), "--test", str(test), "--seed", str(args.seed),
        "--cpus-per-client", str(args.flower_cpus), "--out", str(out),
    ]  # fmt: skip
    run = _Run(argv, _env(VS_FLOWER_SIM=json.dumps(settings)), work / "flower.log")
    try:
        code = run.wait(args.timeout)
    finally:
        run.kill()
    result.wall_s, result.peak_rss_mb = time.time() - run.launched, run.peak_kb / 1024
    if code != 0 or not out.exists():
        result.why = f"exit {code}: {run.tail()}"
        return result
    history = json.loads(out.read_text())
    times = history["eval_times"]
    result.time_to_first_round_s = times[1] - run.launched
    result.round_s = [b - a for a, b in itertools.pairwise(times)]
    result.final_accuracy = history["accuracy"][-1]
    result.note = f"{args.flower_cpus:g} Ray CPU(s) per client"
    return result


def _rounds(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip().endswith("}")]


def run_fedsov(args: argparse.Namespace, scenario_file: Path, work: Path) -> Result:
    result = Result("fedsov")
    out = work / "fedsov"
    rounds_file = out / "rounds.jsonl"
    argv = [sys.executable, "-m", "fedsov", "simulate", str(scenario_file), "--out", str(out)]
    run = _Run(argv, _env(), work / "fedsov.log")
    first: list[float] = []

    def watch() -> None:
        if not first and rounds_file.exists() and rounds_file.stat().st_size > 0:
            first.append(time.time())

    try:
        code = run.wait(args.timeout, until=watch)
    finally:
        run.kill()
    result.wall_s, result.peak_rss_mb = time.time() - run.launched, run.peak_kb / 1024
    rows = [r for r in _rounds(rounds_file) if r.get("completed", True)]
    if code != 0 or len(rows) < args.rounds:
        result.why = f"exit {code}, {len(rows)} of {args.rounds} rounds: {run.tail()}"
        return result
    result.time_to_first_round_s = (first[0] if first else time.time()) - run.launched
    result.round_s = [float(r["seconds"]) for r in rows]
    result.final_accuracy = rows[-1].get("metrics", {}).get("accuracy")
    return result


def same_partitions(ours: Path, theirs: Path, names: Sequence[str]) -> bool:
    """Whether fedsov simulate wrote the very partitions Flower trained on."""
    import numpy as np

    for name in names:
        a, b = ours / f"{name}.npz", theirs / f"{name}.npz"
        if not b.exists():
            return False
        with np.load(a) as x, np.load(b) as y:
            if not (np.array_equal(x["x"], y["x"]) and np.array_equal(x["y"], y["y"])):
                return False
    return True


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))  # finally: kill
    systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    if "flower" in systems:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise SystemExit("Flower's simulation needs Ray: pip install 'fedsov[ray]'") from None
    from fedsov.simulation.data_prep import write_site_data
    from fedsov.simulation.scenario import load_scenario

    work = Path(tempfile.mkdtemp(prefix="vsflower-sim-"))
    say(f"working in {work}")
    try:
        scenario_file = work / "scenario.toml"
        scenario_file.write_text(tomli_w.dumps(scenario(args)), encoding="utf-8")
        names = [f"site-{i}" for i in range(1, args.sites + 1)]  # fedsov simulate's names
        started = time.time()
        _, test = write_site_data(
            load_scenario(scenario_file).data, seed=args.seed, names=names, directory=work / "data"
        )
        data_s = time.time() - started
        say(f"{args.sites} partitions written in {data_s:.1f} s")
        results = []
        for system in systems:
            say(f"{system}: {args.sites} sites, {args.per_round} per round, {args.rounds} rounds")
            if system == "flower":
                result = run_flower(args, work / "data", test, work)
            else:
                result = run_fedsov(args, scenario_file, work)
                if not result.why and not same_partitions(
                    work / "data", work / "fedsov/data", names
                ):
                    result.note = "its partitions differ from Flower's"
            results.append(result)
            stats = round_stats(result.round_s)
            say(
                f"  {system}: "
                + (
                    result.why[:300]
                    if result.why
                    else f"first round after {result.time_to_first_round_s:.1f} s, "
                    f"round 1 {stats['first_round_s']:.2f} s, then median "
                    f"{_cell(stats['round_s_median'])} s"
                )
            )
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    table = markdown(args, results, data_s)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table, encoding="utf-8")
    raw = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "data_s": data_s,
        "runs": [r.summary() for r in results],
    }
    (args.out / "results.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
