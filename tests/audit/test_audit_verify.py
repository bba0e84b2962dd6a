"""verify_ledger names the first bad record and the right reason for each kind of tampering."""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_helpers import WriteLedger, digest, edit_byte, lines_of, resign, write_lines
from cryptography import x509

from fedsov.audit import AuditLedger, Checkpoint, Reason, Signer, verify_ledger
from fedsov.audit.signing import fingerprint, load_certificates
from fedsov.exceptions import AuditError
from fedsov.pki import NodePaths

N = 12


@pytest.fixture
def cert(pki: dict[str, NodePaths]) -> x509.Certificate:
    return load_certificates(pki["site-1"].cert)[0]


@pytest.fixture
def ledger(tmp_path: Path, write_ledger: WriteLedger) -> Path:
    path = tmp_path / "site-1.audit.jsonl"
    write_ledger(path, N)
    return path


def test_a_clean_ledger_verifies(ledger: Path, cert: x509.Certificate) -> None:
    result = verify_ledger(ledger, certificate=cert)
    assert result.ok, result.finding
    assert result.records == N
    assert result.authenticated
    assert result.node == "site-1" and result.jurisdiction == "EU"
    assert result.signers == (fingerprint(cert.public_key()),)
    assert result.head is not None and result.head.seq == N - 1
    assert result.notes == ()
    assert result.to_dict()["ok"] is True


@pytest.mark.parametrize("k", [0, 5, N - 1])
@pytest.mark.parametrize("field", ["content_sha256", "prev", "plan_sha256"])
def test_editing_one_byte_names_the_record_as_edited(
    ledger: Path, cert: x509.Certificate, k: int, field: str
) -> None:
    lines = lines_of(ledger)
    lines[k] = edit_byte(lines[k], field)
    write_lines(ledger, lines)
    for certificate in (cert, None):  # the chain and signatures catch it even without a cert
        finding = verify_ledger(ledger, certificate=certificate).finding
        assert finding is not None
        assert (finding.reason, finding.line, finding.seq) == (Reason.edited, k + 1, k)


def test_editing_the_seq_is_an_edit_not_a_reorder(ledger: Path, cert: x509.Certificate) -> None:
    lines = lines_of(ledger)
    lines[5] = lines[5].replace(b'"seq":5', b'"seq":6')
    write_lines(ledger, lines)
    finding = verify_ledger(ledger, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.edited, 6, 5)
    assert "changed after it was signed" in finding.message


def test_whitespace_added_to_a_line_is_an_edit(ledger: Path, cert: x509.Certificate) -> None:
    lines = lines_of(ledger)
    lines[3] = lines[3].replace(b'"seq":3,', b'"seq": 3,')
    write_lines(ledger, lines)
    finding = verify_ledger(ledger, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.edited, 4, 3)
    assert "canonical" in finding.message


@pytest.mark.parametrize("k", [0, 4, N - 2])
def test_deleting_a_record_names_the_missing_seq(
    ledger: Path, cert: x509.Certificate, k: int
) -> None:
    lines = lines_of(ledger)
    del lines[k]
    write_lines(ledger, lines)
    finding = verify_ledger(ledger, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.removed, k + 1, k)
    assert (
        finding.message
        == f"line {k + 1} holds seq {k + 1} where seq {k} belongs: seq {k} is missing"
    )


def test_deleting_several_records_says_how_many(ledger: Path, cert: x509.Certificate) -> None:
    lines = lines_of(ledger)
    del lines[3:6]
    write_lines(ledger, lines)
    finding = verify_ledger(ledger, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.seq) == (Reason.removed, 3)
    assert "seq 3..5 (3 records) are missing" in finding.message


@pytest.mark.parametrize("k", [0, 5, N - 2])
def test_swapping_two_records_is_reordered(ledger: Path, cert: x509.Certificate, k: int) -> None:
    lines = lines_of(ledger)
    lines[k], lines[k + 1] = lines[k + 1], lines[k]
    write_lines(ledger, lines)
    finding = verify_ledger(ledger, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.reordered, k + 1, k)
    assert f"seq {k} is at line {k + 2}" in finding.message


def test_a_duplicated_record_is_reordered(ledger: Path, cert: x509.Certificate) -> None:
    lines = lines_of(ledger)
    lines.insert(7, lines[2])
    write_lines(ledger, lines)
    finding = verify_ledger(ledger, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.reordered, 8, 7)
    assert "a copy of line 3" in finding.message


def test_a_dropped_tail_is_caught_only_with_a_checkpoint(
    tmp_path: Path, write_ledger: WriteLedger, cert: x509.Certificate
) -> None:
    path = tmp_path / "l.jsonl"
    held = write_ledger(path, 60, checkpoint_every=16, close=True)
    assert [c.seq for c in held] == [16, 33, 50, 63]
    write_lines(path, lines_of(path)[:41])  # seq 0..40 remain
    assert verify_ledger(path, certificate=cert).ok  # a ledger alone cannot show it
    result = verify_ledger(path, certificate=cert, checkpoints=held)
    finding = result.finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.truncated, 42, 41)
    assert "the ledger ends at seq 40, but a checkpoint held elsewhere names seq 63" in (
        finding.message
    )
    assert "at least 23 record(s) were cut off" in finding.message
    assert result.checkpoints_checked == 4


def test_checkpoints_of_other_nodes_are_ignored(
    tmp_path: Path, write_ledger: WriteLedger, cert: x509.Certificate
) -> None:
    path = tmp_path / "l.jsonl"
    held = write_ledger(path, 10, checkpoint_every=4)
    other = [Checkpoint(node="site-2", seq=c.seq + 100, sha256=c.sha256) for c in held]
    result = verify_ledger(path, certificate=cert, checkpoints=[*held, *other])
    assert result.ok and result.checkpoints_checked == len(held)


def test_an_emptied_ledger_is_truncated(
    tmp_path: Path, write_ledger: WriteLedger, cert: x509.Certificate
) -> None:
    path = tmp_path / "l.jsonl"
    held = write_ledger(path, 5, close=True)
    path.write_bytes(b"")
    finding = verify_ledger(path, certificate=cert, checkpoints=held).finding
    assert finding is not None and finding.reason is Reason.truncated
    assert "the ledger is empty" in finding.message


def test_a_history_rewritten_with_the_nodes_own_key_contradicts_its_checkpoint(
    tmp_path: Path, write_ledger: WriteLedger, site_signer: Signer, cert: x509.Certificate
) -> None:
    path = tmp_path / "l.jsonl"
    held = write_ledger(path, 20, checkpoint_every=8)
    resign(path, site_signer, start=3, change={"content_sha256": digest("other")})
    assert verify_ledger(path, certificate=cert).ok  # consistent, and the node's own key
    finding = verify_ledger(path, certificate=cert, checkpoints=held).finding
    assert finding is not None
    assert (finding.reason, finding.seq) == (Reason.edited, held[0].seq)
    assert "rewritten at or before seq 8" in finding.message


def test_a_rewrite_that_leaves_checkpoint_records_alone_is_caught_at_the_checkpoint(
    tmp_path: Path, write_ledger: WriteLedger, site_signer: Signer, cert: x509.Certificate
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 20, checkpoint_every=8)
    resign(path, site_signer, start=3, change={"round": 99}, fix_checkpoints=False)
    finding = verify_ledger(path, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.edited, 9, 8)
    assert "the records before it were rewritten" in finding.message


def test_re_signing_everything_with_a_foreign_key_is_a_forged_signature(
    ledger: Path, cert: x509.Certificate, foreign_signer: Signer
) -> None:
    resign(ledger, foreign_signer)
    result = verify_ledger(ledger, certificate=cert)
    finding = result.finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.forged, 1, 0)
    assert str(finding.reason) == "forged signature"
    assert foreign_signer.fingerprint in finding.message
    assert fingerprint(cert.public_key()) in finding.message
    # Without a certificate the ledger is consistent, and the result says nobody vouched.
    alone = verify_ledger(ledger)
    assert alone.ok and not alone.authenticated
    assert any("no certificate vouched" in note for note in alone.notes)


def test_a_certificate_of_another_node_is_named(ledger: Path, pki: dict[str, NodePaths]) -> None:
    other = load_certificates(pki["agg-eu"].cert)[0]
    finding = verify_ledger(ledger, certificate=other).finding
    assert finding is not None and finding.reason is Reason.forged
    assert "the certificate names agg-eu, but the ledger's node is site-1" in finding.message


def test_records_appended_with_a_foreign_key_are_forged_even_without_a_certificate(
    ledger: Path, foreign_signer: Signer
) -> None:
    lines = lines_of(ledger)
    resign(ledger, foreign_signer, start=9)
    assert lines_of(ledger)[:9] == lines[:9]
    finding = verify_ledger(ledger).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.forged, 10, 9)
    assert "the ledger's first record" in finding.message


def test_a_record_naming_another_node_is_the_wrong_identity(
    tmp_path: Path, site_signer: Signer, cert: x509.Certificate
) -> None:
    path = tmp_path / "l.jsonl"
    with AuditLedger.open(path, signer=site_signer, node="site-9", jurisdiction="EU") as ledger:
        ledger.append(event="update-sent", round=1)
    finding = verify_ledger(path, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.line) == (Reason.identity, 1)
    assert "names node site-9 (EU), but its signer's certificate is site-1 (EU)" in (
        finding.message
    )


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (b"not json\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"seq": 3}\n', "missing field(s)"),
        (b"\n", "not JSON"),
    ],
)
def test_a_malformed_line_is_named(
    ledger: Path, cert: x509.Certificate, bad: bytes, why: str
) -> None:
    lines = lines_of(ledger)
    lines[3] = bad
    write_lines(ledger, lines)
    finding = verify_ledger(ledger, certificate=cert).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.malformed, 4, 3)
    assert why in finding.message


def test_a_torn_last_line_is_ignored_and_noted_without_repairing(
    ledger: Path, cert: x509.Certificate
) -> None:
    with open(ledger, "ab") as f:
        f.write(b'{"v":1,"seq":12,"ti')
    before = ledger.read_bytes()
    result = verify_ledger(ledger, certificate=cert)
    assert result.ok and result.records == N
    assert result.notes == ("a torn last line (19 bytes, never completed) ignored",)
    assert ledger.read_bytes() == before  # verification never writes


def test_a_renewed_key_verifies_with_both_certificates(
    tmp_path: Path,
    write_ledger: WriteLedger,
    foreign_signer: Signer,
    cert: x509.Certificate,
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 3)
    write_ledger(path, 3, signer=foreign_signer)  # the node's new key, after renewal
    assert verify_ledger(path, public_key=foreign_signer.public_key, certificate=cert).ok
    finding = verify_ledger(path, certificate=cert).finding
    assert finding is not None and (finding.reason, finding.seq) == (Reason.forged, 3)
    finding = verify_ledger(path).finding
    assert finding is not None and (finding.reason, finding.seq) == (Reason.forged, 3)
    assert "if the node's key was renewed, pass its certificates" in finding.message


def test_a_missing_ledger_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match=r"ledger .*none\.jsonl: file not found"):
        verify_ledger(tmp_path / "none.jsonl")


def test_a_tail_cut_by_exactly_the_checkpointed_record_is_truncated(
    tmp_path: Path, write_ledger: WriteLedger, cert: x509.Certificate
) -> None:
    """The last checkpoint names seq 63; a ledger that ends at seq 62 lost that one."""
    path = tmp_path / "l.jsonl"
    held = write_ledger(path, 60, checkpoint_every=16, close=True)
    assert max(c.seq for c in held) == 63
    write_lines(path, lines_of(path)[:63])  # seq 0..62 remain
    finding = verify_ledger(path, certificate=cert, checkpoints=held).finding
    assert finding is not None
    assert (finding.reason, finding.line, finding.seq) == (Reason.truncated, 64, 63)
    assert "at least 1 record(s) were cut off" in finding.message
