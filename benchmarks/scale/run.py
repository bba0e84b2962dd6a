"""A simulation at scale, measured: wall time, time to first round, whole-run memory.

    python benchmarks/scale/run.py simulations/scale-1000.toml --out runs/scale-1000
    python benchmarks/scale/run.py SCENARIO --runs 3 -- --workers 4   # options to simulate

Runs ``fedsov simulate SCENARIO --out OUT`` (plus what follows ``--``) and, every
0.25 s, sums the memory of its whole process tree (the launcher, coordinator,
aggregators and site hosts or sites; Ray's processes too when the run starts its own
Ray): resident set size (RSS, counts shared pages once per process: an upper bound)
and proportional set size (PSS, shared pages split between their users: what the run
really holds). Time to first round is from the command's start to the moment the first
round's line appears in ``OUT/rounds.jsonl`` (the round has closed). Prints one JSON
object per run and a summary, and writes ``OUT.scale-benchmark.json`` beside ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        kids: list[int] = []
        for task in tasks:
            text = (task / "children").read_text().split()
            kids += [int(k) for k in text]
        return kids
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant still alive."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _kib(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    out = dict.fromkeys(keys, 0)
    try:
        for line in path.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in out:
                out[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def memory(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS) in bytes summed over the tree of ``pid``, and how many processes."""
    pids = tree(pid)
    rss = pss = 0
    for p in pids:
        rollup = _kib(Path(f"/proc/{p}/smaps_rollup"), ("Rss", "Pss"))
        rss += rollup["Rss"] * 1024
        pss += rollup["Pss"] * 1024
    return rss, pss, len(pids)


def one_run(scenario: Path, out: Path, extra: list[str]) -> dict[str, object]:
    cmd = [sys.executable, "-m", "fedsov", "simulate", str(scenario), "--out", str(out), *extra]
    rounds = out / "rounds.jsonl"
    rounds.unlink(missing_ok=True)
    started = time.monotonic()
    peak_rss = peak_pss = peak_procs = 0
    first_round: float | None = None
    log = out.with_name(f"{out.name}.simulate.log")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            while proc.poll() is None:
                rss, pss, procs = memory(proc.pid)
                peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
                peak_procs = max(peak_procs, procs)
                if first_round is None and rounds.exists() and rounds.stat().st_size:
                    first_round = time.monotonic() - started
                time.sleep(0.25)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    wall = time.monotonic() - started
    summary = json.loads((out / "summary.json").read_text()) if proc.returncode == 0 else {}
    lines = [json.loads(x) for x in rounds.read_text().splitlines()] if rounds.exists() else []
    seconds = [float(r["seconds"]) for r in lines]
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "first_round_s": None if first_round is None else round(first_round, 1),
        "rounds": len(lines),
        "round_s_median": round(statistics.median(seconds[1:]), 2) if len(seconds) > 1 else None,
        "sites_per_round_mean": round(
            statistics.mean(sum(s["status"] == "accepted" for s in r["sites"]) for r in lines), 1
        )
        if lines
        else None,
        "peak_rss_gib": round(peak_rss / 2**30, 2),
        "peak_pss_gib": round(peak_pss / 2**30, 2),
        "peak_processes": peak_procs,
        "final_accuracy": summary.get("final_accuracy"),
        "status": summary.get("status"),
        "log": str(log),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/scale"))
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("extra", nargs="*", help="after --: options for fedsov simulate")
    args = p.parse_args()
    results = []
    for i in range(args.runs):
        out = args.out if args.runs == 1 else args.out.with_name(f"{args.out.name}-{i + 1}")
        result = one_run(args.scenario, out, args.extra)
        print(json.dumps(result), flush=True)
        results.append(result)
    keys = ("wall_s", "first_round_s", "round_s_median", "peak_rss_gib", "peak_pss_gib")
    ok = [r for r in results if r["exit_code"] == 0]
    mean = {
        k: round(statistics.mean(float(str(r[k])) for r in ok), 2)
        for k in keys
        if ok and all(r[k] is not None for r in ok)
    }
    print(json.dumps({"runs": len(results), "completed": len(ok), "mean": mean}))
    (args.out.parent / f"{args.out.name}.scale-benchmark.json").write_text(
        json.dumps({"runs": results, "mean": mean}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
