"""What PrivacyLedger.record writes, what a load refuses, and ε with a chosen accountant."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from fedsov.exceptions import DataError
from fedsov.privacy.accountant import MechanismStep, compute_epsilon
from fedsov.privacy.ledger import PRIVACY_UNIT, LedgerEntry, PrivacyLedger

STEP = MechanismStep(noise_multiplier=1.1, sample_rate=0.05, steps=7)
DATA = "a" * 64


def test_a_new_ledger_is_empty_with_blank_site_and_jurisdiction(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = PrivacyLedger(path)
    assert ledger.path == path
    assert (ledger.site, ledger.jurisdiction, ledger.entries) == ("", "", [])
    entry = ledger.record(dataset=DATA, federation="f", round=1, task_id="t", step=STEP, delta=0.1)
    assert (entry.site, entry.jurisdiction, entry.accountant) == ("", "", "pld")


def test_a_record_has_every_field_and_reads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "site.jsonl"
    ledger = PrivacyLedger(path, site="hospital-a", jurisdiction="DE")
    before = time.time()
    entry = ledger.record(
        dataset=DATA,
        federation="fed-1",
        round=4,
        task_id="task-9",
        step=STEP,
        delta=1e-6,
        accountant="prv",
    )
    after = time.time()
    assert entry.site == "hospital-a" and entry.jurisdiction == "DE"
    assert (entry.federation, entry.round, entry.task_id) == ("fed-1", 4, "task-9")
    assert entry.accountant == "prv"
    assert (entry.noise_multiplier, entry.sample_rate, entry.steps) == (1.1, 0.05, 7)
    assert entry.delta == 1e-6
    assert before <= entry.recorded_unix <= after
    assert entry.dataset == DATA and entry.unit == PRIVACY_UNIT
    assert entry.step == STEP
    assert ledger.entries == [entry]
    on_disk = json.loads(path.read_text().splitlines()[0])
    assert on_disk["site"] == "hospital-a" and on_disk["dataset"] == DATA
    assert PrivacyLedger(path).entries == [entry]


def test_entries_of_unknown_data_count_against_every_dataset(tmp_path: Path) -> None:
    legacy = LedgerEntry(
        site="s",
        jurisdiction="j",
        federation="f",
        accountant="pld",
        round=1,
        task_id="t",
        noise_multiplier=1.0,
        sample_rate=0.1,
        steps=3,
        delta=1e-5,
        recorded_unix=0.0,
    )
    assert legacy.dataset == ""
    assert legacy.about(DATA) and legacy.about("b" * 64) and legacy.about("")
    known = LedgerEntry(**{**legacy.__dict__, "dataset": DATA})
    assert known.about(DATA) and not known.about("b" * 64)
    path = tmp_path / "l.jsonl"
    path.write_text(json.dumps(legacy.__dict__) + "\n" + json.dumps(known.__dict__) + "\n")
    ledger = PrivacyLedger(path)
    assert ledger.history(DATA) == [legacy.step, known.step]
    assert ledger.history("b" * 64) == [legacy.step]


def test_epsilon_uses_the_accountant_asked_for(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "l.jsonl")
    ledger.record(dataset=DATA, federation="f", round=1, task_id="t", step=STEP, delta=1e-5)
    extra = [MechanismStep(2.0, 0.1, 3)]
    for accountant in ("pld", "rdp"):
        expected = compute_epsilon(history=[STEP, *extra], delta=1e-5, accountant=accountant)
        assert ledger.epsilon(
            DATA, delta=1e-5, accountant=accountant, extra=extra
        ) == pytest.approx(expected, rel=1e-12)
    assert ledger.epsilon(DATA, delta=1e-5) == pytest.approx(
        compute_epsilon(history=[STEP], delta=1e-5), rel=1e-12
    )
    pld = ledger.epsilon(DATA, delta=1e-5, accountant="pld")
    rdp = ledger.epsilon(DATA, delta=1e-5, accountant="rdp")
    assert abs(pld - rdp) > 0.01


def test_an_unparsable_line_is_named_with_the_parsers_reason(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = PrivacyLedger(path)
    for round_ in (1, 2, 3):
        ledger.record(
            dataset=DATA, federation="f", round=round_, task_id="t", step=STEP, delta=1e-5
        )
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = "garbage\n"
    path.write_text("".join(lines))
    try:
        json.loads("garbage")
    except ValueError as exc:
        why = str(exc)  # "Expecting value: line 1 column 1 (char 0)": has ": " itself
    message = f"{path}, line 2: corrupt ledger entry: {why}"
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        PrivacyLedger(path)


def test_an_entry_with_a_missing_field_is_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    ledger = PrivacyLedger(path)
    ledger.record(dataset=DATA, federation="f", round=1, task_id="t", step=STEP, delta=1e-5)
    good = path.read_text()
    record = json.loads(good)
    del record["steps"]
    path.write_text(good + json.dumps(record) + "\n" + good)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}, line 2: corrupt ledger entry: "):
        PrivacyLedger(path)
    path.write_text(json.dumps(record) + "\n" + good)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}, line 1: corrupt ledger entry: "):
        PrivacyLedger(path)
