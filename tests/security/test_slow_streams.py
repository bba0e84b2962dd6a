"""Issue 13, "four idle streams stop every upload": with 8 idle and 8 slow streams open
(from admitted sites and from a certificate that is not admitted), an honest site's
upload completes and the round closes at its deadline; every hostile stream ends with
a named status and reason. The scenario is benchmarks/hostile_streams.py's."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from fedsov.config import StreamLimits

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "hostile_streams.py"
NAMED = {
    ("PERMISSION_DENIED", "not-admitted"),
    ("ALREADY_EXISTS", "duplicate"),
    ("DEADLINE_EXCEEDED", "too-slow"),
    ("DEADLINE_EXCEEDED", "idle-timeout"),
    ("DEADLINE_EXCEEDED", "late"),
    ("CLIENT_SIDE", ""),  # ended while still writing; the server's counts name why
}


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hostile_streams", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_honest_upload_completes_among_idle_and_slow_streams(tmp_path: Path) -> None:
    bench = _benchmark()
    # The defaults, but a 2 s wait for a header (the benchmark shows the defaults).
    limits = StreamLimits(first_message_timeout_s=2.0)
    outcome = asyncio.run(bench.scenario(tmp_path, round_timeout_s=3.0, limits=limits))
    report = outcome.report
    assert report.completed
    assert {s.site: s.status for s in report.sites} == {
        "honest": "accepted",
        **{name: "late" for name in bench.HOSTILE},
    }
    assert len(outcome.hostile) == 16
    assert set(outcome.hostile) <= NAMED, outcome.hostile
    assert outcome.refusals["not-admitted"] == 8
