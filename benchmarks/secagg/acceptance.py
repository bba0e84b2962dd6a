"""Issue 16's round-level acceptance, printed: a 10-site secure region against plain
FedAvg (3 runs), 2 sites stopping before their upload and 3 after (threshold 5), and
too few survivors. Uses the engine-level seam of tests/node/test_secure_round.py
(the real engine and protocol, no socket); run from the repository root:

    .venv/bin/python benchmarks/secagg/acceptance.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "node"))
import test_secure_round as t


def region(threshold: int, timeout_s: float, dies: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        deltas = t.updates(10)
        eng = t.engine(Path(d), sites=10, threshold=threshold, timeout_s=timeout_s)
        start = eng.model.sha256
        named = {list(deltas)[i]: why for i, why in dies.items()}
        report, seen = asyncio.run(t.run(eng, deltas, named))
        uploaded = sorted(s.site for s in report.sites if s.status == "accepted")
        if not report.completed:
            print(f"  failed: {report.failure}; model unchanged: {eng.model.sha256 == start}")
            return
        p = seen[0]["params"]
        err = t.relative_error(eng.model.arrays(), t.fedavg(deltas, uploaded))
        print(
            f"  t={p.threshold} k={p.neighbours} ring={p.ring_bits} bits: {len(uploaded)} "
            f"updates summed; relative L2 to their plain FedAvg {err:.2e}"
        )


def main() -> None:
    print("10 sites, default threshold, no dropouts (3 runs):")
    for _ in range(3):
        region(0, 30.0, {})
    print("10 sites, threshold 5: 2 stop before their upload, 3 after it:")
    region(5, 6.0, {0: "before", 1: "before", 2: "after", 3: "after", 4: "after"})
    print("10 sites, threshold 5: 6 stop before their upload:")
    region(5, 6.0, dict.fromkeys(range(6), "before"))


if __name__ == "__main__":
    main()
