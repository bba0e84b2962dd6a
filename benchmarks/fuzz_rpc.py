"""10,000 fuzzed requests against a real coordinator, then an honest round (issue 13).

The long run of tests/security/test_fuzz_rpc.py: a `fedsov coordinator` process over
mTLS gets seeded random requests on every RPC (hostile field values, byte flips of
valid messages, pure noise) from admitted sites, a same-CA site outside the
allow-list and another CA's certificate; then two honest sites complete the round.

    .venv/bin/python benchmarks/fuzz_rpc.py [--requests 10000] [--seed 1313]

Prints the status histogram, the coordinator's RSS before and after, whether the
honest round completed with the honest FedAvg, and the wall time. Acceptance: the
coordinator stays up, RSS grows < 50 MiB, every call ends with a named status, and
the round completes. Exit status 0 when all four hold.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "security"))

from hostile import (  # the harness lives with the tests
    HONEST,
    CoordinatorProcess,
    FuzzReport,
    MiB,
    build_hostile_pki,
    fuzz_then_honest_round,
    hostile_sites,
    print_report,
)

RSS_GROWTH_LIMIT = 50 * MiB


def run(out: Path, *, requests: int, seed: int, concurrency: int, hostile: int) -> FuzzReport:
    pki = build_hostile_pki(out / "pki", hostile=hostile_sites(hostile))
    rounds = {
        "num_rounds": 1,
        "min_sites": len(HONEST) + hostile,
        "min_updates": len(HONEST),
        "timeout_s": 3600.0,  # the round stays open while the fuzzing goes on
        "start_timeout_s": 120.0,
        "max_attempts": 1,
    }
    with CoordinatorProcess(out, pki, rounds=rounds) as coordinator:
        return asyncio.run(
            fuzz_then_honest_round(
                coordinator,
                requests=requests,
                seed=seed,
                concurrency=concurrency,
                deadline_s=3600.0,
            )
        )


def verdict(report: FuzzReport) -> dict[str, bool]:
    growth = report.rss_after - report.rss_before
    return {
        "coordinator up and serving": report.alive_after_fuzz and report.serving_after_fuzz,
        f"RSS growth {growth / MiB:+.1f} MiB < {RSS_GROWTH_LIMIT // MiB} MiB": growth
        < RSS_GROWTH_LIMIT,
        f"every call a named status ({len(report.violations)} not)": not report.violations,
        "honest round completed with the honest FedAvg (1e-6)": (
            report.finished is not None
            and report.model_error is not None
            and report.model_error <= 1e-6
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1313)
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight at once")
    parser.add_argument("--hostile", type=int, default=32, help="admitted hostile sites")
    parser.add_argument("--out", type=Path, default=None, help="keep the run's files here")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuzz-rpc-") as tmp:
        out = args.out or Path(tmp)
        report = run(
            out,
            requests=args.requests,
            seed=args.seed,
            concurrency=args.concurrency,
            hostile=args.hostile,
        )
        print_report(report)
        print(f"coordinator log: {out / 'coordinator.log'}" if args.out else "")
    checks = verdict(report)
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    print(f"total wall time {time.monotonic() - started:.1f} s")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
