"""AuditLedger: signed, chained, checkpointed, durable, and it resumes after a crash."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import PLAN, WriteLedger, digest, edit_byte, lines_of, write_lines
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from fedsov.audit import (
    GENESIS_PREV,
    AuditLedger,
    AuditRecord,
    Checkpoint,
    Signer,
    canonical_json,
    read_ledger,
    verify_ledger,
)
from fedsov.audit.signing import verify_signature
from fedsov.exceptions import AuditError, LedgerTampered, PKIError
from fedsov.pki import NodePaths


def open_site(path: Path, signer: Signer, **kwargs: Any) -> AuditLedger:
    return AuditLedger.open(path, signer=signer, node="site-1", jurisdiction="EU", **kwargs)


def test_records_are_chained_signed_canonical_lines(
    tmp_path: Path, write_ledger: WriteLedger, site_signer: Signer
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 3)
    records = read_ledger(path)
    raw = lines_of(path)
    assert [r.seq for r in records] == [0, 1, 2]
    assert records[0].prev == GENESIS_PREV
    for before, after in itertools.pairwise(records):
        assert after.prev == hashlib.sha256(before.line()).hexdigest() == before.sha256
    for record, line in zip(records, raw, strict=True):
        assert line == record.line() + b"\n"
        obj = json.loads(line)
        assert line.rstrip(b"\n") == canonical_json(obj)
        del obj["sig"]
        assert record.signed_bytes() == canonical_json(obj)
        assert verify_signature(site_signer.public_key, record.sig, record.signed_bytes())
    first = records[0]
    assert (first.node, first.jurisdiction, first.event, first.round) == (
        "site-1",
        "EU",
        "update-sent",
        0,
    )
    assert (first.peer, first.peer_jurisdiction, first.plan_sha256) == ("agg-eu", "EU", PLAN)
    assert (first.content_sha256, first.epsilon, first.delta) == (digest("update 0"), 0.5, 1e-5)
    assert first.detail == {"task": "t0", "note": "ε spent"}
    assert "ε spent".encode() in raw[0]  # UTF-8, not \\u escapes
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_checkpoint_every_n_records_and_on_close(tmp_path: Path, site_signer: Signer) -> None:
    path = tmp_path / "l.jsonl"
    held: list[Checkpoint] = []
    with open_site(path, site_signer, checkpoint_every=3, on_checkpoint=held.append) as ledger:
        for i in range(7):
            ledger.append(event="update-received", round=i, peer="x", content_sha256=digest("u"))
        assert [c.seq for c in held] == [3, 7]
    records = read_ledger(path)
    assert [r.seq for r in records if r.event == "checkpoint"] == [3, 7, 9]
    assert [c.seq for c in held] == [3, 7, 9]
    for cp in held:
        record = records[cp.seq]
        assert cp == Checkpoint(node="site-1", seq=cp.seq, sha256=record.sha256)
        assert record.detail == {"head_seq": cp.seq - 1, "head_sha256": records[cp.seq - 1].sha256}
    assert ledger.head == held[-1]


def test_close_is_idempotent_and_a_closed_ledger_refuses_appends(
    tmp_path: Path, site_signer: Signer
) -> None:
    path = tmp_path / "l.jsonl"
    ledger = open_site(path, site_signer)
    ledger.close()
    assert not path.exists()  # nothing to checkpoint in an empty ledger
    ledger = open_site(path, site_signer)
    ledger.append(event="export", round=1)
    ledger.close()
    ledger.close()
    assert len(read_ledger(path)) == 2
    with pytest.raises(AuditError, match="is closed"):
        ledger.append(event="export", round=2)
    again = open_site(path, site_signer)
    again.close()  # the last record is already a checkpoint
    assert len(read_ledger(path)) == 2


def test_reopening_continues_the_chain(
    tmp_path: Path, write_ledger: WriteLedger, site_signer: Signer
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 4, close=True)
    write_ledger(path, 2, close=True)
    records = read_ledger(path)
    assert [r.seq for r in records] == list(range(len(records)))
    assert [r.event for r in records].count("checkpoint") == 2
    assert verify_ledger(path, public_key=site_signer.public_key).ok


def test_a_torn_last_line_is_cut_off_on_open_and_the_chain_goes_on(
    tmp_path: Path, write_ledger: WriteLedger, site_signer: Signer
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 3)
    complete = path.read_bytes()
    with open(path, "ab") as f:
        f.write(complete.splitlines()[-1][:40])  # killed mid-write
    ledger = open_site(path, site_signer)
    assert path.read_bytes() == complete
    assert len(ledger) == 3
    record = ledger.append(event="model-received", round=3, peer="agg-eu")
    assert record.seq == 3 and record.prev == read_ledger(path)[2].sha256
    assert verify_ledger(path, public_key=site_signer.public_key).ok


def test_a_tampered_ledger_is_refused_on_open_naming_the_line(
    tmp_path: Path, write_ledger: WriteLedger, site_signer: Signer
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 5)
    lines = lines_of(path)
    lines[2] = edit_byte(lines[2], "content_sha256")
    write_lines(path, lines)
    with pytest.raises(LedgerTampered, match=r"l\.jsonl, line 3 \(seq 2\): edited"):
        open_site(path, site_signer)
    lines[2] = b"{not json\n"
    write_lines(path, lines)
    with pytest.raises(LedgerTampered, match=r"line 3 \(seq 2\): malformed: not JSON"):
        open_site(path, site_signer)


def test_a_ledger_of_another_node_is_refused(
    tmp_path: Path, write_ledger: WriteLedger, site_signer: Signer
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 1)
    with pytest.raises(AuditError, match=r"belongs to site-1 \(EU\), not site-2 \(EU\)"):
        AuditLedger.open(path, signer=site_signer, node="site-2", jurisdiction="EU")
    with pytest.raises(AuditError, match="invalid jurisdiction"):
        AuditLedger.open(path, signer=site_signer, node="site-1", jurisdiction="eu")


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"event": "checkpoint"}, "checkpoint records are the ledger's own"),
        ({"event": "Update Sent"}, "field 'event'"),
        ({"event": "export", "content_sha256": "abc"}, "field 'content_sha256'"),
        ({"event": "export", "round": -1}, "field 'round'"),
        ({"event": "export", "epsilon": math.inf}, "field 'epsilon'"),
        ({"event": "export", "detail": {"x": math.nan}}, "NaN"),
        ({"event": "export", "detail": {"x": object()}}, "not JSON serializable"),
    ],
)
def test_bad_fields_are_refused_and_nothing_is_written(
    tmp_path: Path, site_signer: Signer, fields: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "l.jsonl"
    ledger = open_site(path, site_signer)
    with pytest.raises(AuditError, match=problem):
        ledger.append(**fields)
    assert not path.exists() and len(ledger) == 0


def test_open_with_certificate_reads_the_identity(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    path = tmp_path / "agg.jsonl"
    paths = pki["agg-eu"]
    with AuditLedger.open_with_certificate(
        path, cert=paths.cert, key=paths.key, plan_sha256=PLAN
    ) as ledger:
        assert (ledger.node, ledger.jurisdiction) == ("agg-eu", "EU")
        ledger.append(event="model-published", round=1, content_sha256=digest("model"))
    assert verify_ledger(path).ok
    with pytest.raises(PKIError, match="does not match certificate"):
        AuditLedger.open_with_certificate(path, cert=paths.cert, key=pki["site-1"].key)


@pytest.mark.parametrize(
    "make_key",
    [ed25519.Ed25519PrivateKey.generate, lambda: rsa.generate_private_key(65537, 2048)],
    ids=["ed25519", "rsa"],
)
def test_other_key_types_sign_and_verify(tmp_path: Path, make_key: Any) -> None:
    signer = Signer(make_key())
    path = tmp_path / "l.jsonl"
    with open_site(path, signer) as ledger:
        ledger.append(event="update-sent", round=1, content_sha256=digest("u"))
    assert verify_ledger(path, public_key=signer.public_key).ok
    lines = lines_of(path)
    lines[0] = edit_byte(lines[0], "content_sha256")
    write_lines(path, lines)
    finding = verify_ledger(path, public_key=signer.public_key).finding
    assert finding is not None and str(finding.reason) == "edited"


def test_a_record_round_trips_through_its_dict(tmp_path: Path, write_ledger: WriteLedger) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 1)
    record = read_ledger(path)[0]
    assert AuditRecord.from_dict(record.to_dict()) == record
    with pytest.raises(ValueError, match="unexpected field"):
        AuditRecord.from_dict({**record.to_dict(), "contents": "raw data"})
    with pytest.raises(ValueError, match="format version 2"):
        AuditRecord.from_dict({**record.to_dict(), "v": 2})
