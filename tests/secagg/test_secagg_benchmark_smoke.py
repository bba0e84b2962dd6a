"""benchmarks/secagg/run.py end to end, tiny: 4 sites, 3,000 params, one repeat."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from fedsov.secagg.region import SEALED_BYTES
from fedsov.secagg.shamir import SHARE_BYTES

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--sites", "4", "--params", "3000", "--repeats", "1"]


@pytest.fixture(scope="module")
def harness() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("secagg_run", ROOT / "benchmarks/secagg/run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_rows_with_ratios_and_bytes(
    harness: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rows.json"
    rows = harness.main([*TINY, "--dropouts", "1", "--json", str(out)])
    assert [(r["case"], r["sites"], r["ring_bits"]) for r in rows] == [
        ("fedavg", 4, 64),
        ("dp", 4, 32),
    ]
    for r in rows:
        assert (r["neighbours"], r["threshold"], r["dropouts"], r["repeats"]) == (3, 3, 1, 1)
        for key in ("bytes_ratio", "aggregator_ratio", "round_ratio"):
            assert math.isfinite(r[key]) and r[key] > 0
        assert r["round_s"] == pytest.approx(r["site_s"] + r["aggregator_s"])
        assert r["round_ratio"] == pytest.approx(r["round_s"] / r["round_plain_s"])
        sent = r["site_bytes_breakdown"]
        assert set(sent) == {"keys", "sealed shares", "masked upload", "reveals"}
        assert r["site_bytes"] == sum(sent.values())
        assert sent["masked upload"] == (3000 + 1) * r["ring_bits"] // 8
        assert sent["sealed shares"] == 3 * (len("site-000") + SEALED_BYTES)  # one per neighbour
        assert sent["reveals"] == 4 * (len("site-000") + 1 + SHARE_BYTES)  # itself, k = 3 more
        assert r["plain_bytes"] == 4 * 3000
        assert r["bytes_ratio"] == pytest.approx(r["site_bytes"] / r["plain_bytes"])
        assert r["rel_l2"] < 1e-4 and r["rel_l2_plain"] < 1e-6
        assert set(r["site_breakdown_s"]) == {"keys", "share", "accept_shares", "mask", "reveal"}
        assert "unmasking" in r["aggregator_breakdown_s"]
    assert rows[0]["bytes_ratio"] > 2 > rows[1]["bytes_ratio"] > 1  # 64- vs 32-bit ring
    assert json.loads(out.read_text()) == rows
    table = capsys.readouterr().out
    assert "| fedavg | 4 | 3 | 3 | 64 |" in table and "| dp | 4 | 3 | 3 | 32 |" in table


def test_quick_and_bad_arguments(harness: ModuleType) -> None:
    args = harness._args(["--quick"])
    assert (args.site_counts, args.params) == ([10], 100_000)
    assert harness._args([]).site_counts == [10, 50, 100]
    for bad in (["--cases", "krum"], ["--sites", "4", "--dropouts", "3"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            harness._args(bad)
