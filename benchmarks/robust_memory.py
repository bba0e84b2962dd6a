"""Coordinator memory while a rule that needs every update aggregates a large model.

upload_memory.py's setup (a real `fedsov coordinator` process over mTLS, sites in this
process, memory sampled from /proc every 20 ms) with ``[strategy] name = "fedmedian"``:
the round keeps each of the 20 updates of a ~10M-parameter MLP in its spool file, and
the median is computed window by window from those files when the round closes.

    .venv/bin/python benchmarks/robust_memory.py [--sites 20] [--hidden 10000]
        [--strategy fedmedian]

Target (issue 15): growth above the idle baseline < 4x the model's size, as FedAvg's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from upload_memory import main_async  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=10_000, help="10000: ~10.1M params")
    parser.add_argument("--transfers", type=int, default=4)
    parser.add_argument("--strategy", default="fedmedian")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.monotonic()
    result = asyncio.run(main_async(args))
    result["benchmark_wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
