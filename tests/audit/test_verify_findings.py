"""verify_ledger's result, exactly: its JSON form, whose identity it reports, the notes it
adds, the labels of the keys it names, and how checkpoints held elsewhere are judged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from audit_helpers import WriteLedger, lines_of, write_lines
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import x25519

from fedsov.audit import Checkpoint, Finding, Reason, Signer, verify_ledger
from fedsov.audit.signing import fingerprint, load_certificates
from fedsov.exceptions import AuditError
from fedsov.pki import NodePaths


@pytest.fixture
def cert(pki: dict[str, NodePaths]) -> x509.Certificate:
    return load_certificates(pki["site-1"].cert)[0]


@pytest.fixture
def agg_cert(pki: dict[str, NodePaths]) -> x509.Certificate:
    return load_certificates(pki["agg-eu"].cert)[0]


@pytest.fixture
def ledger(tmp_path: Path, write_ledger: WriteLedger) -> Path:
    path = tmp_path / "site-1.audit.jsonl"
    write_ledger(path, 5)
    return path


def hashes(path: Path) -> list[str]:
    return [hashlib.sha256(line.rstrip(b"\n")).hexdigest() for line in lines_of(path)]


def cert_label(c: x509.Certificate, name: str) -> str:
    return f"certificate {name} (EU, key {fingerprint(c.public_key())})"


# --- the result and its JSON form ---------------------------------------------------------


def test_a_clean_result_as_json(ledger: Path, cert: x509.Certificate) -> None:
    result = verify_ledger(ledger, certificate=cert)
    assert result.to_dict() == {
        "ledger": str(ledger),
        "ok": True,
        "records": 5,
        "head": {"node": "site-1", "seq": 4, "sha256": hashes(ledger)[4]},
        "node": "site-1",
        "jurisdiction": "EU",
        "signers": [fingerprint(cert.public_key())],
        "authenticated": True,
        "checkpoints_checked": 0,
        "finding": None,
        "notes": [],
    }


def test_a_bad_result_as_json(ledger: Path, site_signer: Signer) -> None:
    lines = lines_of(ledger)
    lines[3] = b"[1]\n"
    write_lines(ledger, [*lines, b'{"torn'])
    result = verify_ledger(ledger)
    assert not result.ok
    assert result.to_dict() == {
        "ledger": str(ledger),
        "ok": False,
        "records": 5,
        "head": {"node": "site-1", "seq": 2, "sha256": hashes(ledger)[2]},
        "node": "site-1",
        "jurisdiction": "EU",
        "signers": [site_signer.fingerprint],
        "authenticated": False,
        "checkpoints_checked": 0,
        "finding": {"reason": "malformed", "line": 4, "seq": 3, "message": "not a JSON object"},
        "notes": [
            "a torn last line (6 bytes, never completed) ignored",
            f"signatures checked against the key of the first record "
            f"({site_signer.fingerprint}), which no certificate vouched for: pass the node's "
            "certificate to authenticate it",
        ],
    }


def test_an_empty_ledger_as_json(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    result = verify_ledger(path)
    assert result.to_dict() == {
        "ledger": str(path),
        "ok": True,
        "records": 0,
        "head": None,
        "node": None,
        "jurisdiction": None,
        "signers": [],
        "authenticated": False,
        "checkpoints_checked": 0,
        "finding": None,
        "notes": [],
    }


# --- whose ledger it is -------------------------------------------------------------------


def test_an_empty_ledger_is_the_first_certificates_node(
    tmp_path: Path, cert: x509.Certificate, agg_cert: x509.Certificate
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    result = verify_ledger(path, certificate=[agg_cert, cert])
    assert (result.node, result.jurisdiction, result.authenticated) == ("agg-eu", "EU", True)
    result = verify_ledger(path, certificate=(cert,))
    assert (result.node, result.jurisdiction) == ("site-1", "EU")


def test_a_ledger_whose_first_line_is_malformed_is_the_certificates_node(
    ledger: Path, agg_cert: x509.Certificate
) -> None:
    write_lines(ledger, [b"nope\n", *lines_of(ledger)[1:]])
    result = verify_ledger(ledger, certificate=agg_cert)
    assert (result.node, result.jurisdiction) == ("agg-eu", "EU")
    assert result.head is None
    alone = verify_ledger(ledger)
    assert (alone.node, alone.jurisdiction, alone.notes) == (None, None, ())


def test_a_ledger_names_its_first_records_node_over_the_certificate(
    ledger: Path, agg_cert: x509.Certificate
) -> None:
    result = verify_ledger(ledger, certificate=agg_cert)
    assert (result.node, result.jurisdiction) == ("site-1", "EU")


def test_a_public_key_names_no_node(tmp_path: Path, site_signer: Signer) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    result = verify_ledger(path, public_key=site_signer.public_key)
    assert (result.node, result.jurisdiction, result.authenticated) == (None, None, True)
    assert result.notes == ()


# --- which keys are trusted, and how they are named ---------------------------------------


def test_a_public_key_authenticates_without_a_note(ledger: Path, site_signer: Signer) -> None:
    result = verify_ledger(ledger, public_key=site_signer.public_key)
    assert result.ok and result.authenticated
    assert result.notes == ()
    assert result.signers == (site_signer.fingerprint,)


def test_a_public_key_that_cannot_verify_is_bad_input(ledger: Path) -> None:
    key = x25519.X25519PrivateKey.generate().public_key()
    with pytest.raises(AuditError, match=r"^cannot verify audit records with a X25519PublicKey$"):
        verify_ledger(ledger, public_key=key)


def test_the_wrong_public_key_is_named(
    ledger: Path, site_signer: Signer, foreign_signer: Signer
) -> None:
    finding = verify_ledger(ledger, public_key=foreign_signer.public_key).finding
    assert finding == Finding(
        Reason.forged,
        1,
        0,
        f"it is validly signed, but by key {site_signer.fingerprint}, not by the given public "
        f"key ({foreign_signer.fingerprint})",
    )


def test_certificates_and_a_key_are_all_named(
    ledger: Path, site_signer: Signer, foreign_signer: Signer, agg_cert: x509.Certificate
) -> None:
    result = verify_ledger(ledger, certificate=[agg_cert], public_key=foreign_signer.public_key)
    assert result.authenticated
    assert result.finding == Finding(
        Reason.forged,
        1,
        0,
        f"it is validly signed, but by key {site_signer.fingerprint}, not by "
        f"{cert_label(agg_cert, 'agg-eu')} or the given public key "
        f"({foreign_signer.fingerprint}); the certificate names agg-eu, but the ledger's "
        "node is site-1",
    )


def test_a_foreign_key_is_named_against_the_certificate(
    tmp_path: Path, write_ledger: WriteLedger, foreign_signer: Signer, cert: x509.Certificate
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 2, signer=foreign_signer)
    assert verify_ledger(path, certificate=cert).finding == Finding(
        Reason.forged,
        1,
        0,
        f"it is validly signed, but by key {foreign_signer.fingerprint}, not by "
        f"{cert_label(cert, 'site-1')}",
    )


def test_a_renewed_key_lists_both_signers(
    tmp_path: Path, write_ledger: WriteLedger, foreign_signer: Signer, site_signer: Signer
) -> None:
    path = tmp_path / "l.jsonl"
    write_ledger(path, 2)
    write_ledger(path, 2, signer=foreign_signer)
    result = verify_ledger(
        path, certificate=None, public_key=foreign_signer.public_key
    )  # only the new key given: the old one is not trusted
    assert result.finding is not None and result.finding.seq == 0
    both = verify_ledger(path, public_key=site_signer.public_key)
    assert both.finding is not None and both.finding.seq == 2
    assert both.signers == (site_signer.fingerprint,)
    assert both.head is not None and both.head.seq == 1


# --- the head and the count ----------------------------------------------------------------


def test_the_head_is_the_last_record_that_passed(ledger: Path, cert: x509.Certificate) -> None:
    lines = lines_of(ledger)
    lines[3] = lines[3].replace(b'"round":3', b'"round":7')
    write_lines(ledger, lines)
    result = verify_ledger(ledger, certificate=cert)
    assert result.finding is not None and result.finding.seq == 3
    assert result.records == 5
    assert result.head == Checkpoint(node="site-1", seq=2, sha256=hashes(ledger)[2])


# --- checkpoints held elsewhere ------------------------------------------------------------


def test_a_checkpoint_that_matches_passes_and_is_counted(
    ledger: Path, cert: x509.Certificate
) -> None:
    h = hashes(ledger)
    held = [Checkpoint("site-1", 4, h[4]), Checkpoint("site-1", 0, h[0])]
    result = verify_ledger(ledger, certificate=cert, checkpoints=iter(held))
    assert result.ok and result.checkpoints_checked == 2


def test_the_lowest_contradicted_checkpoint_is_named(ledger: Path, cert: x509.Certificate) -> None:
    h = hashes(ledger)
    held = [
        Checkpoint("site-1", 3, "c" * 64),
        Checkpoint("site-1", 0, h[0]),
        Checkpoint("site-1", 1, "b" * 64),
        Checkpoint("site-1", 9, "d" * 64),  # beyond the end: a cut-off tail comes second
    ]
    result = verify_ledger(ledger, certificate=cert, checkpoints=held)
    assert result.finding == Finding(
        Reason.edited,
        2,
        1,
        f"seq 1 hashes to {h[1]}, but a checkpoint held elsewhere names {'b' * 64}: "
        "the ledger was rewritten at or before seq 1",
    )
    assert result.checkpoints_checked == 4


def test_a_contradicted_last_record(ledger: Path, cert: x509.Certificate) -> None:
    h = hashes(ledger)
    finding = verify_ledger(
        ledger, certificate=cert, checkpoints=[Checkpoint("site-1", 4, "e" * 64)]
    ).finding
    assert finding == Finding(
        Reason.edited,
        5,
        4,
        f"seq 4 hashes to {h[4]}, but a checkpoint held elsewhere names {'e' * 64}: "
        "the ledger was rewritten at or before seq 4",
    )


@pytest.mark.parametrize("order", [1, -1])
def test_the_furthest_checkpoint_beyond_the_end_is_named(
    ledger: Path, cert: x509.Certificate, order: int
) -> None:
    held = [Checkpoint("site-1", 5, "a" * 64), Checkpoint("site-1", 9, "9" * 64)][::order]
    result = verify_ledger(ledger, certificate=cert, checkpoints=held)
    assert result.finding == Finding(
        Reason.truncated,
        6,
        5,
        f"the ledger ends at seq 4, but a checkpoint held elsewhere names seq 9 (sha256 "
        f"{'9' * 64}): at least 5 record(s) were cut off",
    )
    assert result.checkpoints_checked == 2


def test_one_checkpoint_just_past_the_end(ledger: Path, cert: x509.Certificate) -> None:
    finding = verify_ledger(
        ledger, certificate=cert, checkpoints=[Checkpoint("site-1", 5, "a" * 64)]
    ).finding
    assert finding == Finding(
        Reason.truncated,
        6,
        5,
        f"the ledger ends at seq 4, but a checkpoint held elsewhere names seq 5 (sha256 "
        f"{'a' * 64}): at least 1 record(s) were cut off",
    )


def test_an_empty_ledger_of_nobody_is_judged_by_every_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    held = [Checkpoint("site-1", 2, "a" * 64), Checkpoint("site-2", 1, "b" * 64)]
    result = verify_ledger(path, checkpoints=held)
    assert result.checkpoints_checked == 2
    assert result.finding == Finding(
        Reason.truncated,
        1,
        0,
        f"the ledger is empty, but a checkpoint held elsewhere names seq 2 (sha256 "
        f"{'a' * 64}): at least 3 record(s) were cut off",
    )


def test_an_empty_ledger_of_a_known_node_ignores_other_nodes_checkpoints(
    tmp_path: Path, cert: x509.Certificate
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    held = [Checkpoint("site-2", 1, "b" * 64)]
    result = verify_ledger(path, certificate=cert, checkpoints=held)
    assert result.ok and result.checkpoints_checked == 0


def test_checkpoints_are_not_checked_once_a_record_is_bad(
    ledger: Path, cert: x509.Certificate
) -> None:
    lines = lines_of(ledger)
    del lines[2]
    write_lines(ledger, lines)
    held = [Checkpoint("site-1", 9, "a" * 64)]
    result = verify_ledger(ledger, certificate=cert, checkpoints=held)
    assert result.finding is not None and result.finding.reason is Reason.removed
    assert result.checkpoints_checked == 0
