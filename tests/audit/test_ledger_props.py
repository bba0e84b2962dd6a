"""Bounded fuzzing of the audit ledger's line parser and of verification.

Valid lines round-trip; a line that is not a record is refused with a reason that names
the bad field, and the file readers name its line (AuditError); ``verify_ledger``
reports any damage to a ledger as a finding and never crashes on it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audit_strategies import (
    DETAILS,
    EVENTS,
    FIELDS,
    GARBAGE_LINES,
    HEX64,
    INVALID,
    JSON_SCALARS,
    TEXT,
    dumps,
    records,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fedsov.audit import (
    AuditLedger,
    AuditRecord,
    Checkpoint,
    Reason,
    Signer,
    append_checkpoint,
    read_checkpoints,
    read_ledger,
    verify_ledger,
)
from fedsov.audit._chain import parse_line
from fedsov.exceptions import AuditError, LedgerTampered

FAST = settings(max_examples=40, deadline=None)
FLOATS = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
N = 5  # records a sample ledger holds before its closing checkpoint


@dataclass(frozen=True)
class Sample:
    """A closed ledger of site-1 (EU): its bytes, records and the checkpoints handed out."""

    raw: bytes
    records: tuple[AuditRecord, ...]
    held: tuple[Checkpoint, ...]
    signer: Signer

    @property
    def lines(self) -> list[bytes]:
        """Each line with its newline (split as the ledger is: at b"\\n" only)."""
        return [line + b"\n" for line in self.raw.split(b"\n")[:-1]]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, site_signer: Signer) -> Sample:
    path = tmp_path_factory.mktemp("sample") / "site-1.audit.jsonl"
    held: list[Checkpoint] = []
    with AuditLedger.open(
        path, signer=site_signer, node="site-1", jurisdiction="EU", on_checkpoint=held.append
    ) as ledger:
        for i in range(N):
            ledger.append(
                event="update-sent",
                round=i,
                peer="agg-eu",
                content_sha256=hashlib.sha256(b"%d" % i).hexdigest(),
                epsilon=0.25 * i,
                delta=1e-5,
                detail={"task": f"t{i}", "note": "ε", "nested": {"sites": [1, 2]}},
            )
    return Sample(path.read_bytes(), ledger.records, tuple(held), site_signer)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One file, rewritten by each example (no per-example temporary folder)."""
    yield tmp_path_factory.mktemp("scratch") / "ledger.jsonl"


def unsigned(record: AuditRecord) -> dict[str, Any]:
    """What a record says: everything but its signature."""
    out = record.to_dict()
    del out["sig"]
    return out


# ----- valid lines -------------------------------------------------------------------


@FAST
@given(records)
def test_a_valid_record_line_round_trips(record: AuditRecord) -> None:
    line = record.line()
    parsed = parse_line(line)
    assert parsed == record
    assert isinstance(parsed, AuditRecord)
    assert parsed.line() == line
    assert parsed.sha256 == hashlib.sha256(line).hexdigest()
    assert json.loads(line) == record.to_dict()


appends = st.fixed_dictionaries(
    {
        "event": EVENTS.filter(lambda e: e != "checkpoint"),
        "round": st.none() | st.integers(0, 2**64),
        "peer": st.none() | TEXT,
        "peer_jurisdiction": st.none() | TEXT,
        "content_sha256": st.none() | HEX64,
        "epsilon": st.none() | FLOATS,
        "delta": st.none() | FLOATS,
        "decision": st.none() | TEXT,
        "detail": DETAILS,
    }
)


@settings(max_examples=15, deadline=None)
@given(st.lists(appends, min_size=1, max_size=4), st.integers(1, 3))
def test_whatever_a_node_appends_verifies_and_reads_back(
    site_signer: Signer, entries: list[dict[str, Any]], checkpoint_every: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "l.jsonl"
        held: list[Checkpoint] = []
        with AuditLedger.open(
            path,
            signer=site_signer,
            node="site-1",
            jurisdiction="EU",
            checkpoint_every=checkpoint_every,
            on_checkpoint=held.append,
        ) as ledger:
            for fields in entries:
                ledger.append(**fields)
        result = verify_ledger(path, public_key=site_signer.public_key, checkpoints=held)
        assert result.ok, result.finding
        assert result.records == len(ledger) == len(entries) + len(held)
        assert read_ledger(path) == list(ledger.records)
        assert (
            AuditLedger.open(path, signer=site_signer, node="site-1", jurisdiction="EU").records
            == ledger.records
        )


# ----- lines that are not records ----------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(GARBAGE_LINES)
@example(b"[" * 100_000)  # was RecursionError out of json.loads
@example(b'{"a":' * 5000)
def test_a_line_that_is_no_record_is_refused_with_a_reason(line: bytes) -> None:
    assert isinstance(parse_line(line), str)


@settings(max_examples=80, deadline=None)
@given(records, st.sampled_from(FIELDS), st.data())
def test_a_field_of_the_wrong_type_is_named(
    record: AuditRecord, field: str, data: st.DataObject
) -> None:
    obj = record.to_dict()
    obj[field] = data.draw(INVALID[field], label=field)
    problem = parse_line(dumps(obj))
    assert isinstance(problem, str)
    assert f"field {field!r}" in problem or (field == "v" and "format version" in problem)


@FAST
@given(
    records,
    st.sets(st.sampled_from(FIELDS), min_size=1),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k not in FIELDS), JSON_SCALARS),
)
def test_missing_and_unexpected_fields_are_named(
    record: AuditRecord, dropped: set[str], extra: dict[str, Any]
) -> None:
    obj = record.to_dict()
    assert parse_line(dumps({**obj, **extra})) == (
        record if not extra else f"unexpected field(s) {', '.join(sorted(extra))}"
    )
    for name in dropped:
        del obj[name]
    assert parse_line(dumps({**obj, **extra})) == f"missing field(s) {', '.join(sorted(dropped))}"


@pytest.mark.parametrize("depth", [33, 500, 985, 990, 995, 5000])
def test_a_deeply_nested_detail_is_refused_not_a_crash(
    sample: Sample, scratch: Path, depth: int
) -> None:
    """Nesting json can parse but the stack cannot re-encode (985 levels crashed
    ``verify_ledger`` with RecursionError) is refused by the parser, by name."""
    line = sample.lines[0].rstrip(b"\n")
    start = line.index(b'"detail":{') + len(b'"detail":{')
    deep = b'"deep":' + b"[" * depth + b"]" * depth + b","
    line = line[:start] + deep + line[start:]
    problem = parse_line(line)
    assert isinstance(problem, str)
    assert "field 'detail' nests deeper than 32 levels" in problem or "not JSON" in problem
    scratch.write_bytes(line + b"\n")
    result = verify_ledger(scratch)
    assert result.finding is not None
    assert (result.finding.reason, result.finding.line) == (Reason.malformed, 1)


# ----- damaged ledgers ---------------------------------------------------------------


def _check_read(path: Path, sample: Sample) -> None:
    """The readers either read the damaged ledger or say why not, as AuditError."""
    try:
        read_ledger(path)
    except AuditError as exc:
        assert "line " in str(exc)
    try:
        opened = AuditLedger.open(path, signer=sample.signer, node="site-1", jurisdiction="EU")
    except AuditError as exc:  # LedgerTampered, or a ledger of another node
        assert str(exc)
    else:  # only a torn tail was cut off: what is left is what was written
        assert opened.records == sample.records[: len(opened.records)]


@st.composite
def damaged(draw: st.DrawFn, raw: bytes) -> bytes:
    """``raw`` damaged inside its complete lines (bytes after the last newline are a torn
    append, ignored by design): a byte flipped, bytes inserted or deleted, or cut short."""
    at = draw(st.integers(0, len(raw) - 1))
    how = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    if how == "flip":
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    if how == "insert":
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    if how == "delete":
        return raw[:at] + raw[at + draw(st.integers(1, 200)) :]
    return raw[:at]


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_any_damage_to_a_ledger_is_reported_never_a_crash(
    sample: Sample, scratch: Path, data: st.DataObject
) -> None:
    """With the checkpoint its upstream holds, every change is found; without, a change is
    tolerated only where it changes nothing a record says (a torn tail, a re-encoded
    signature on the last line)."""
    damaged_raw = data.draw(damaged(sample.raw))
    assert damaged_raw != sample.raw
    scratch.write_bytes(damaged_raw)
    key = sample.signer.public_key

    result = verify_ledger(scratch, public_key=key, checkpoints=sample.held)
    assert not result.ok
    assert result.finding is not None
    assert 1 <= result.finding.line <= len(sample.lines) + 8
    assert str(result.finding).startswith(f"line {result.finding.line}")
    assert result.to_dict()["ok"] is False

    alone = verify_ledger(scratch, public_key=key)
    if alone.ok:
        lines = damaged_raw.split(b"\n")[:-1]  # complete lines only
        said = [unsigned(r) for r in map(parse_line, lines) if isinstance(r, AuditRecord)]
        assert len(said) == len(lines) <= len(sample.records)
        assert said == [unsigned(r) for r in sample.records[: len(said)]]
    _check_read(scratch, sample)


@FAST
@given(st.integers(0, N), GARBAGE_LINES)
@example(N - 1, b"[" * 100_000)  # was RecursionError out of json.loads
def test_a_line_that_is_no_record_is_named_by_every_reader(
    sample: Sample, scratch: Path, k: int, garbage: bytes
) -> None:
    lines = sample.lines
    lines[k] = garbage + b"\n"
    scratch.write_bytes(b"".join(lines))

    result = verify_ledger(scratch, public_key=sample.signer.public_key)
    assert result.finding is not None
    assert (result.finding.reason, result.finding.line) == (Reason.malformed, k + 1)
    with pytest.raises(AuditError, match=rf"line {k + 1}: "):
        read_ledger(scratch)
    with pytest.raises(LedgerTampered, match=rf"line {k + 1} \(seq {k}\): malformed"):
        AuditLedger.open(scratch, signer=sample.signer, node="site-1", jurisdiction="EU")


@FAST
@given(st.data(), st.booleans())
def test_a_duplicated_key_is_never_verified(
    sample: Sample, scratch: Path, data: st.DataObject, first: bool
) -> None:
    """json keeps the last of two equal keys; the line is then not canonical (edited), or
    says something its signature does not cover (edited), or is malformed."""
    k = data.draw(st.integers(0, N))
    field = data.draw(st.sampled_from(FIELDS))
    original = json.loads(sample.lines[k])
    value = data.draw(
        st.just(original[field]) | INVALID[field] | records.map(lambda r: r.to_dict()[field])
    )
    dup = b'"' + field.encode() + b'":' + json.dumps(value, ensure_ascii=False).encode()
    line = sample.lines[k].rstrip(b"\n")
    line = b"{" + dup + b"," + line[1:] if first else line[:-1] + b"," + dup + b"}"
    lines = sample.lines
    lines[k] = line + b"\n"
    scratch.write_bytes(b"".join(lines))
    result = verify_ledger(scratch, public_key=sample.signer.public_key, checkpoints=sample.held)
    assert result.finding is not None
    assert result.finding.line == k + 1
    assert result.finding.reason in (Reason.edited, Reason.malformed)


# ----- checkpoints files -------------------------------------------------------------

checkpoints = st.builds(Checkpoint, TEXT, st.integers(min_value=0), HEX64)


@FAST
@given(st.lists(checkpoints, max_size=4), st.data())
def test_checkpoint_lines_round_trip_and_a_bad_one_is_named(
    scratch: Path, held: list[Checkpoint], data: st.DataObject
) -> None:
    scratch.unlink(missing_ok=True)
    for cp in held:
        append_checkpoint(scratch, cp)
    if not held:
        scratch.write_bytes(b"")
    assert read_checkpoints(scratch) == held
    garbage = data.draw(
        GARBAGE_LINES.filter(lambda g: g.strip() and not g.strip().startswith(b"["))
    )
    k = data.draw(st.integers(1, len(held) + 1))
    lines = [line + b"\n" for line in scratch.read_bytes().split(b"\n")[:-1]]
    lines.insert(k - 1, garbage + b"\n")
    scratch.write_bytes(b"".join(lines))
    with pytest.raises(AuditError, match=rf"line {k}: "):
        read_checkpoints(scratch)


@pytest.mark.parametrize("text", [b"[" * 100_000, b"[" + b"{" * 3000])
def test_a_checkpoints_array_nested_too_deeply_is_refused(scratch: Path, text: bytes) -> None:
    scratch.write_bytes(text + b"\n")  # was RecursionError out of json.loads
    with pytest.raises(AuditError, match="checkpoints file"):
        read_checkpoints(scratch)
