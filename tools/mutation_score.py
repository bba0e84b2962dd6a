"""Score a finished `mutmut run` against the list of equivalent mutants.

Reads `mutmut results --all true` and docs/mutation-equivalents.txt (one
``<mutant name>  # why it is equivalent`` per line). Prints the counts and every
survivor that is neither killed nor listed, and exits 1 if killed mutants are
under 90% of all or any survivor is unexplained. Timeouts count as killed: the
suite did not pass with the mutant in place.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

EQUIVALENTS = Path(__file__).resolve().parents[1] / "docs" / "mutation-equivalents.txt"
KILLED = {"killed", "timeout"}
THRESHOLD = 0.90


def results() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    status = {}
    for line in out.splitlines():
        name, sep, verdict = line.strip().rpartition(": ")
        if sep:
            status[name] = verdict
    return status


def equivalents() -> dict[str, str]:
    listed = {}
    for raw in EQUIVALENTS.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, why = line.partition("#")
        if not why.strip():
            raise SystemExit(f"{EQUIVALENTS}: {name.strip()} has no reason after '#'")
        listed[name.strip()] = why.strip()
    return listed


def main() -> int:
    status = results()
    if not status:
        print("no mutants: run `make mutation` (or `mutmut run`) first", file=sys.stderr)
        return 1
    listed = equivalents()
    counts = Counter(status.values())
    killed = sum(n for verdict, n in counts.items() if verdict in KILLED)
    survivors = sorted(name for name, verdict in status.items() if verdict not in KILLED)
    unexplained = [name for name in survivors if name not in listed]
    stale = sorted(name for name in listed if status.get(name) in KILLED)
    total = len(status)
    print(f"mutants: {total}  " + "  ".join(f"{v}: {n}" for v, n in sorted(counts.items())))
    print(f"killed (incl. timeouts): {killed}/{total} = {killed / total:.1%}")
    print(f"survivors listed as equivalent: {len(survivors) - len(unexplained)}")
    for name in unexplained:
        print(f"UNEXPLAINED {status[name]}: {name}")
    for name in stale:
        print(f"note: {name} is listed as equivalent but was killed; drop the line")
    return 0 if killed / total >= THRESHOLD and not unexplained else 1


if __name__ == "__main__":
    sys.exit(main())
