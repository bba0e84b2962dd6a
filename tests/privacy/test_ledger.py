"""The site's privacy ledger: composes across restarts, survives kills, never half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fedsov.exceptions import DataError
from fedsov.privacy.accountant import MechanismStep, compute_epsilon
from fedsov.privacy.ledger import PrivacyLedger

STEP = MechanismStep(noise_multiplier=1.0, sample_rate=0.1, steps=10)
DATA = "d" * 64  # a dataset fingerprint


def record(ledger: PrivacyLedger, n: int, federation: str = "fed", dataset: str = DATA) -> None:
    for i in range(n):
        ledger.record(
            dataset=dataset,
            federation=federation,
            round=i + 1,
            task_id=f"t{i}",
            step=STEP,
            delta=1e-5,
        )


def test_entries_survive_a_restart_and_compose(tmp_path: Path) -> None:
    path = tmp_path / "site.ledger.jsonl"
    record(PrivacyLedger(path), 3)
    reopened = PrivacyLedger(path)
    record(reopened, 2)
    again = PrivacyLedger(path)
    assert len(again.entries) == 5
    assert [e.round for e in again.entries] == [1, 2, 3, 1, 2]
    assert again.epsilon(DATA, delta=1e-5) == pytest.approx(
        compute_epsilon(history=[STEP] * 5, delta=1e-5)
    )
    assert again.history("other data") == []
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    record(PrivacyLedger(path), 2)
    with open(path, "ab") as f:
        f.write(b'{"federation":"fed","round":3,"ta')  # killed mid-write
    ledger = PrivacyLedger(path)
    assert len(ledger.entries) == 2
    assert path.read_bytes().endswith(b"}\n")
    record(ledger, 1)
    assert len(PrivacyLedger(path).entries) == 3


def test_corruption_inside_the_ledger_is_refused_by_line(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    record(PrivacyLedger(path), 3)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"garbage\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=r"l\.jsonl, line 2: corrupt ledger entry"):
        PrivacyLedger(path)


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fedsov.privacy.accountant import MechanismStep
    from fedsov.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(Path(sys.argv[1]))
    step = MechanismStep(1.0, 0.1, 10)
    for i in range(100000):
        ledger.record(
            dataset="d", federation="fed", round=i, task_id=str(i), step=step, delta=1e-5
        )
        print(len(ledger.entries), flush=True)  # acknowledged: on disk
    """
)


def test_kills_at_random_moments_never_lose_or_half_write_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for delay in (0.3, 0.45, 0.6, 0.75, 0.9, 1.1, 1.3, 1.7, 2.3, 3.1):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # writing has begun (imports take a while)
            time.sleep(delay / 10)
            os.kill(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
            out = first + out
        finally:
            if proc.poll() is None:
                proc.kill()
        acknowledged = int(out.split()[-1]) if out.split() else 0
        ledger = PrivacyLedger(path)  # drops a torn last line, if any
        assert len(ledger.entries) >= acknowledged  # nothing acknowledged is lost
        assert len(ledger.entries) <= acknowledged + 1  # at most the one being written
        assert path.read_bytes().endswith(b"\n")
    assert len(PrivacyLedger(path).entries) > 0


def test_report_per_site_jurisdiction_and_federation(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedsov.cli.privacy import app
    from fedsov.privacy.report import privacy_report

    paris = PrivacyLedger(tmp_path / "paris.jsonl", site="paris", jurisdiction="EU")
    record(paris, 3)
    mumbai = PrivacyLedger(tmp_path / "mumbai.jsonl", site="mumbai", jurisdiction="IN")
    record(mumbai, 1)
    report = privacy_report([tmp_path / "paris.jsonl", tmp_path / "mumbai.jsonl"])
    by_site = {s["site"]: s for s in report["sites"]}
    expected = compute_epsilon(history=[STEP] * 3, delta=1e-5)
    assert by_site["paris"]["epsilon"] == pytest.approx(expected)
    assert by_site["paris"]["rounds"] == 3 and by_site["mumbai"]["jurisdiction"] == "IN"
    assert report["jurisdictions"]["EU"]["max_epsilon"] == pytest.approx(expected)
    assert report["federations"]["fed"]["sites"] == 2
    out = CliRunner().invoke(app, ["report", str(tmp_path / "paris.jsonl")])
    assert out.exit_code == 0 and "paris" in out.output and "jurisdiction EU" in out.output


def test_report_says_what_each_site_epsilon_protects(tmp_path: Path) -> None:
    from fedsov.privacy.ledger import DATASET_UNIT
    from fedsov.privacy.report import privacy_report

    update = MechanismStep(noise_multiplier=0.5, sample_rate=1.0, steps=1)
    for name, units in (("app", [DATASET_UNIT] * 2), ("mixed", ["record", DATASET_UNIT])):
        ledger = PrivacyLedger(tmp_path / f"{name}.jsonl", site=name, jurisdiction="EU")
        for i, unit in enumerate(units):
            step = update if unit == DATASET_UNIT else STEP
            ledger.record(
                dataset=DATA,
                federation="fed",
                round=i + 1,
                task_id=f"t{i}",
                step=step,
                delta=1e-5,
                unit=unit,
            )
    record(PrivacyLedger(tmp_path / "dpsgd.jsonl", site="dpsgd", jurisdiction="EU"), 2)
    report = privacy_report(sorted(tmp_path.glob("*.jsonl")))
    # update-level only: the whole dataset; with any DP-SGD release: one record (a
    # dataset-level ε bounds the record-level one)
    units = {s["site"]: s["unit"] for s in report["sites"]}
    assert units == {"app": "dataset", "mixed": "record", "dpsgd": "record"}


def test_report_reads_regional_site_level_ledgers(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedsov.cli.privacy import app
    from fedsov.privacy.report import privacy_report
    from fedsov.privacy.site_level import SiteLevelLedger

    record(PrivacyLedger(tmp_path / "paris.jsonl", site="paris", jurisdiction="EU"), 2)
    region = SiteLevelLedger(
        tmp_path / "site-level-ledger.jsonl", region="agg-eu", jurisdiction="EU", federation="fed"
    )
    for number in (1, 2):
        region.record(noise_multiplier=1.0, sites=4, population=5, round=number, delta=1e-5)
    report = privacy_report([tmp_path / "paris.jsonl", tmp_path / "site-level-ledger.jsonl"])
    (row,) = report["regions"]
    expected = SiteLevelLedger(tmp_path / "site-level-ledger.jsonl").fixed_size_epsilon(1e-5)
    assert row["region"] == "agg-eu" and row["rounds"] == 2
    assert row["epsilon"] == pytest.approx(expected) and expected > 0
    eu = report["jurisdictions"]["EU"]
    assert eu["sites"] == 1 and eu["regions"] == 1
    assert eu["max_site_level_epsilon"] == pytest.approx(expected)
    assert report["federations"]["fed"]["regions"] == 1
    out = CliRunner().invoke(app, ["report", *map(str, tmp_path.glob("*.jsonl"))])
    assert out.exit_code == 0, out.output
    assert "agg-eu" in out.output and "max site-level ε" in out.output

    (tmp_path / "notes.jsonl").write_text("not json\n")
    out = CliRunner().invoke(app, ["report", str(tmp_path / "notes.jsonl")])
    assert out.exit_code == 2 and "notes.jsonl" in out.output
    out = CliRunner().invoke(app, ["report", str(tmp_path / "missing.jsonl")])
    assert out.exit_code == 2 and "no such ledger file" in out.output


def test_epsilon_follows_the_data_across_federations(tmp_path: Path) -> None:
    """Releases from one dataset compose whatever federation they were made for; another
    dataset in the same ledger does not count; entries without a fingerprint (an older
    fedsov) count against every dataset."""
    from fedsov.privacy.report import privacy_report

    path = tmp_path / "site.jsonl"
    ledger = PrivacyLedger(path, site="paris", jurisdiction="EU")
    record(ledger, 2, federation="cancer-study")
    record(ledger, 3, federation="cardio-study")
    record(ledger, 4, federation="cardio-study", dataset="e" * 64)
    again = PrivacyLedger(path)
    assert again.history(DATA) == [STEP] * 5
    assert again.epsilon(DATA, delta=1e-5) == pytest.approx(
        compute_epsilon(history=[STEP] * 5, delta=1e-5)
    )
    assert {e.unit for e in again.entries} == {"record"}
    rows = {r["dataset"]: r for r in privacy_report([path])["sites"]}
    assert rows[DATA]["rounds"] == 5
    assert rows[DATA]["federations"] == ["cancer-study", "cardio-study"]
    assert rows["e" * 64]["rounds"] == 4
    assert rows[DATA]["neighbours"] == "replace-one"

    legacy = tmp_path / "legacy.jsonl"
    line = (
        '{"site": "paris", "jurisdiction": "EU", "federation": "old", "accountant": "prv", '
        '"round": 1, "task_id": "t", "noise_multiplier": 1.0, "sample_rate": 0.1, '
        '"steps": 10, "delta": 1e-05, "recorded_unix": 0.0}\n'
    )
    legacy.write_text(line)
    old = PrivacyLedger(legacy)
    record(old, 1)
    assert PrivacyLedger(legacy).history(DATA) == [STEP] * 2
    assert PrivacyLedger(legacy).history("any other data") == [STEP]
