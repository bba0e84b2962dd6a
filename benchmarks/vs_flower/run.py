"""fedsov beside Flower: the same no-op federation on both, interleaved, one table.

    python benchmarks/vs_flower/run.py                     # every case, 3 pairs
    python benchmarks/vs_flower/run.py --cases 10x1M,1x100M --pairs 1 --rounds 3
    python benchmarks/vs_flower/run.py --quick             # 2 sites, tiny model, fedsov only

Each pair runs Flower then fedsov on a case (``--systems`` picks), each run in a
fresh temporary directory with every process killed by PID at its end. Flower is
installed in ``benchmarks/vs_flower/.venv-flower`` (the version pyproject.toml pins)
unless it is there already. The TLS loopback limit is measured in the same run.
Writes ``table.md`` and ``results.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cases import CASES, QUICK, Case
from fedsov_side import run_fedsov
from flower_side import ensure_flower, run_flower
from procs import RunFailed
from results import RunResult, TlsLimit, markdown
from tls_limit import measure

RUNNERS: dict[str, Callable[[Case, int, Path, RunResult], None]] = {
    "flower": run_flower,
    "fedsov": run_fedsov,
}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"of {', '.join(CASES)}")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=4, help="per run; the first is not timed")
    p.add_argument("--systems", default="flower,fedsov")
    p.add_argument("--tls-mb", type=int, default=800, help="bytes for the loopback limit")
    p.add_argument("--out", type=Path, default=Path("runs/vs_flower"))
    p.add_argument("--keep", action="store_true", help="keep each run's directory and logs")
    p.add_argument("--quick", action="store_true", help="CI: 2 sites, 10k params, fedsov")
    args = p.parse_args()
    if args.quick:
        args.pairs, args.rounds, args.systems, args.tls_mb = 1, 2, "fedsov", 16
    if args.rounds < 2:
        p.error("--rounds must be at least 2: the first round is not timed")
    unknown = set(args.systems.split(",")) - set(RUNNERS)
    if unknown:
        p.error(f"--systems: unknown {', '.join(sorted(unknown))}; use flower and/or fedsov")
    return args


def _cases(args: argparse.Namespace) -> list[Case]:
    if args.quick:
        return [QUICK]
    names = args.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    return [CASES[n] for n in names]


def _one(system: str, case: Case, pair: int, args: argparse.Namespace) -> RunResult:
    result = RunResult(system=system, case=case.name, pair=pair)
    work = Path(tempfile.mkdtemp(prefix=f"vsflower-{system}-{case.name}-"))
    say(f"{case.name} pair {pair}: {system} ({case.sites} site(s), {case.params:,} params)")
    try:
        RUNNERS[system](case, args.rounds, work, result)
    except RunFailed as exc:
        result.why = str(exc)
    except Exception as exc:  # any failure of one run goes in the table
        result.why = f"{type(exc).__name__}: {exc}"
    finally:
        if args.keep or not result.ok:
            say(f"  logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    s = result.summary()
    if result.ok:
        say(
            f"  {system}: round {s['round_s_median']:.3f} s, exit {s['after_last_close_s']:.2f} s "
            f"after the last close, start-up {s['startup_s_median']:.2f} s, "
            f"site RSS {s['site_rss_mb']:.0f} MB ({result.wall_s:.0f} s in all)"
        )
    else:
        say(f"  {system}: did not finish ({result.why})")
    return result


def main() -> None:
    args = _args()
    systems = [s for s in RUNNERS if s in args.systems.split(",")]  # Flower first
    cases = _cases(args)
    if "flower" in systems:
        ensure_flower(say)
    say(f"TLS loopback limit: {args.tls_mb} MB")
    tls: TlsLimit = measure(args.tls_mb)
    for line in tls.lines():
        say(line)
    results = [
        _one(system, case, pair, args)
        for case in cases
        for pair in range(1, args.pairs + 1)
        for system in systems
    ]
    table = markdown(cases, results, tls)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table)
    raw = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "tls_limit": vars(tls),
        "runs": [r.summary() for r in results],
    }
    (args.out / "results.json").write_text(json.dumps(raw, indent=2))
    print(table)
    say(f"wrote {args.out / 'table.md'} and {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
