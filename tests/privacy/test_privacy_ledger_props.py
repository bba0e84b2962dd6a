"""Bounded fuzzing of the site's privacy ledger: valid entries round-trip, and a damaged
line anywhere but a torn tail stops the site with a DataError naming the line, rather
than loading an entry that the ε composition would miscount or trip over later."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fedsov.exceptions import DataError
from fedsov.privacy.accountant import MechanismStep
from fedsov.privacy.ledger import LedgerEntry, PrivacyLedger

TEXT = st.text(max_size=10)
COUNT = st.integers(min_value=0, max_value=2**40)
FINITE = st.floats(allow_nan=False, allow_infinity=False)

entries = st.builds(
    LedgerEntry,
    site=TEXT,
    jurisdiction=TEXT,
    federation=TEXT,
    accountant=TEXT,
    round=COUNT,
    task_id=TEXT,
    noise_multiplier=st.floats(min_value=0, allow_infinity=False),
    sample_rate=st.floats(min_value=0, max_value=1, exclude_min=True),
    steps=COUNT,
    delta=st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True),
    recorded_unix=FINITE,
    dataset=TEXT,
    unit=TEXT,
)
NAMES = [f.name for f in fields(LedgerEntry)]

# A value of the wrong kind for each type of field (NaN and Infinity via json's literals).
_NOT_STR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.lists(TEXT))
_NOT_INT = st.one_of(st.none(), st.booleans(), st.floats(), TEXT, st.lists(st.integers()))
_NOT_FLOAT = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    TEXT,
    st.dictionaries(TEXT, st.integers(), max_size=2),
)
WRONG = {
    f.name: {"str": _NOT_STR, "int": _NOT_INT, "float": _NOT_FLOAT}[str(f.type)]
    for f in fields(LedgerEntry)
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("privacy") / "site.ledger.jsonl"


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


@settings(max_examples=40, deadline=None)
@given(st.lists(entries, max_size=4))
def test_valid_entries_round_trip(scratch: Path, written: list[LedgerEntry]) -> None:
    scratch.write_bytes(b"".join(line(asdict(e)) for e in written))
    assert PrivacyLedger(scratch).entries == written


@settings(max_examples=10, deadline=None)
@given(st.lists(entries, min_size=1, max_size=3))
def test_what_a_site_records_reads_back(scratch: Path, written: list[LedgerEntry]) -> None:
    scratch.unlink(missing_ok=True)
    ledger = PrivacyLedger(scratch, site="s", jurisdiction="EU")
    for e in written:
        step = MechanismStep(e.noise_multiplier, e.sample_rate, e.steps)
        ledger.record(
            dataset=e.dataset,
            federation=e.federation,
            round=e.round,
            task_id=e.task_id,
            step=step,
            delta=e.delta,
            accountant=e.accountant,
        )
    assert PrivacyLedger(scratch).entries == ledger.entries
    assert [e.step for e in ledger.entries] == [e.step for e in written]


ONE = [LedgerEntry("s", "EU", "f", "pld", 1, "t", 1.0, 0.1, 10, 1e-5, 0.0, "d" * 64)]
wrong_fields = st.sampled_from(NAMES).flatmap(lambda n: st.tuples(st.just(n), WRONG[n]))


@settings(max_examples=60, deadline=None)
@given(st.lists(entries, min_size=1, max_size=3), st.integers(0, 2), wrong_fields)
@example(ONE, 0, ("dataset", 7))  # matched no dataset: the release went uncounted in ε
@example(ONE, 0, ("noise_multiplier", math.nan))  # loaded; ConfigError at the next ε
@example(ONE, 0, ("steps", "10"))
def test_a_field_of_the_wrong_type_stops_the_site_naming_the_line(
    scratch: Path, written: list[LedgerEntry], k: int, wrong: tuple[str, object]
) -> None:
    k %= len(written)
    name, value = wrong
    records = [asdict(e) for e in written]
    records[k][name] = value
    scratch.write_bytes(b"".join(line(r) for r in records))
    with pytest.raises(DataError, match=rf"line {k + 1}: corrupt ledger entry: .*'{name}'"):
        PrivacyLedger(scratch)


@settings(max_examples=20, deadline=None)
@given(
    st.lists(entries, min_size=1, max_size=3),
    st.integers(0, 2),
    st.sampled_from(
        [("noise_multiplier", -1.0), ("sample_rate", 0.0), ("sample_rate", 1.5), ("steps", -1)]
    ),
)
def test_an_impossible_release_stops_the_site_naming_the_line(
    scratch: Path, written: list[LedgerEntry], k: int, bad: tuple[str, object]
) -> None:
    """Values of the right type that no mechanism step can have."""
    k %= len(written)
    records = [asdict(e) for e in written]
    records[k][bad[0]] = bad[1]
    scratch.write_bytes(b"".join(line(r) for r in records))
    with pytest.raises(DataError, match=rf"line {k + 1}: corrupt ledger entry: {bad[0]}"):
        PrivacyLedger(scratch)


GARBAGE = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[1, 2]",
            b'"text"',
            b"NaN",
            b"9" * 5000,
            b'{"site": "s"',
            b'{"site": "s", "unknown": 1}',
            b"[" * 100_000,  # was RecursionError, not DataError
            b"{}",
        ]
    ),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(entries, min_size=1, max_size=3), GARBAGE, st.data())
def test_a_damaged_line_stops_the_site_naming_it_and_a_torn_tail_is_cut(
    scratch: Path, written: list[LedgerEntry], garbage: bytes, data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(written)))
    lines = [line(asdict(e)) for e in written]
    lines.insert(k, garbage + b"\n")
    scratch.write_bytes(b"".join(lines))
    if garbage == b"" and k == len(written):  # a blank last line holds nothing to lose
        assert PrivacyLedger(scratch).entries == written
    else:
        with pytest.raises(DataError, match=rf"line {k + 1}: corrupt ledger entry"):
            PrivacyLedger(scratch)
    # The same bytes without their newline, at the end: a torn append, cut off.
    scratch.write_bytes(b"".join(line(asdict(e)) for e in written) + garbage)
    assert PrivacyLedger(scratch).entries == written
    assert scratch.read_bytes().endswith(b"}\n")
