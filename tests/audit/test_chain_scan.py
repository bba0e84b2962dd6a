"""scan_lines, record by record: which check fails first, and the exact finding it gives.

Lines are built here one field at a time (signed, chained or not) so that each check
of ``fedsov.audit._chain`` can be reached on its own.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from fedsov.audit import AuditRecord, Finding, Reason, Signer, canonical_json
from fedsov.audit._chain import TrustedKey, parse_line, scan_lines, spki_der
from fedsov.audit.record import GENESIS_PREV
from fedsov.audit.signing import decode_public_key
from fedsov.pki._keys import generate_key


@pytest.fixture(scope="module")
def k1() -> Signer:
    return Signer(generate_key())


@pytest.fixture(scope="module")
def k2() -> Signer:
    return Signer(generate_key())


def record(
    signer: Signer,
    seq: int,
    prev: str,
    *,
    node: str = "site-1",
    jurisdiction: str = "EU",
    event: str = "update-sent",
    detail: dict[str, Any] | None = None,
    key: str | None = None,
) -> AuditRecord:
    obj: dict[str, Any] = {
        "v": 1,
        "seq": seq,
        "time": "2025-01-02T03:04:05.000006Z",
        "node": node,
        "jurisdiction": jurisdiction,
        "event": event,
        "round": seq,
        "peer": None,
        "peer_jurisdiction": None,
        "plan_sha256": None,
        "content_sha256": None,
        "epsilon": None,
        "delta": None,
        "decision": None,
        "detail": detail if detail is not None else {},
        "prev": prev,
        "key": key if key is not None else signer.key_field,
    }
    obj["sig"] = signer.sign(canonical_json(obj))
    return AuditRecord.from_dict(obj)


def sha(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def chain(signer: Signer, n: int, **fields: Any) -> list[bytes]:
    """``n`` well-formed lines (no newline), seq 0.., each chained to the one before."""
    lines: list[bytes] = []
    prev = GENESIS_PREV
    for seq in range(n):
        line = record(signer, seq, prev, **fields).line()
        lines.append(line)
        prev = sha(line)
    return lines


def then(signer: Signer, lines: list[bytes], seq: int | None = None, **fields: Any) -> bytes:
    """A line that follows ``lines`` (chained to the last; seq its position unless given)."""
    prev = sha(lines[-1]) if lines else GENESIS_PREV
    return record(signer, len(lines) if seq is None else seq, prev, **fields).line()


def trusted(signer: Signer, label: str = "K", **kw: Any) -> TrustedKey:
    return TrustedKey(spki_der(signer.public_key), label, **kw)


# --- parse_line and spki_der --------------------------------------------------------------


def test_parse_line_returns_the_record_or_says_what_is_wrong(k1: Signer) -> None:
    rec = record(k1, 0, GENESIS_PREV)
    assert parse_line(rec.line()) == rec
    assert parse_line(b"nope") == "not JSON (Expecting value: line 1 column 1 (char 0))"
    assert parse_line(b"[1]") == "not a JSON object"
    assert parse_line(b'{"seq": 0}').startswith("missing field(s) ")


def test_spki_der_is_the_keys_der_subject_public_key_info(k1: Signer) -> None:
    der = spki_der(k1.public_key)
    assert der == base64.b64decode(k1.key_field)
    assert serialization.load_der_public_key(der) == k1.public_key


# --- a clean chain ------------------------------------------------------------------------


def test_a_clean_chain_passes_with_every_record_hash_and_signer(k1: Signer) -> None:
    lines = chain(k1, 4)
    for trust in (None, [trusted(k1)]):
        scan = scan_lines(lines, trusted=trust)
        assert scan.finding is None
        assert scan.records == [parse_line(line) for line in lines]
        assert scan.hashes == [sha(line) for line in lines]
        assert scan.signers == [k1.fingerprint]


def test_an_empty_ledger_passes_with_nothing(k1: Signer) -> None:
    scan = scan_lines([], trusted=[trusted(k1)])
    assert (scan.records, scan.hashes, scan.signers, scan.finding) == ([], [], [], None)


def test_signers_are_listed_once_each_in_order_of_first_use(k1: Signer, k2: Signer) -> None:
    lines = chain(k1, 2)
    lines.append(then(k2, lines))
    lines.append(then(k1, lines))
    scan = scan_lines(lines, trusted=[trusted(k2), trusted(k1)])
    assert scan.finding is None
    assert scan.signers == [k1.fingerprint, k2.fingerprint]


def test_with_key_changes_any_key_may_sign(k1: Signer, k2: Signer) -> None:
    lines = chain(k1, 2)
    lines.append(then(k2, lines))
    scan = scan_lines(lines, trusted=None, key_changes=True)
    assert scan.finding is None
    assert len(scan.records) == 3
    assert scan.signers == [k1.fingerprint, k2.fingerprint]
    # Still one node: the first record's identity binds the rest.
    lines.append(then(k2, lines, node="site-2"))
    finding = scan_lines(lines, trusted=None, key_changes=True).finding
    assert finding == Finding(
        Reason.identity,
        4,
        3,
        "it names node site-2 (EU), but the first record is site-1 (EU)",
    )


def test_with_key_changes_a_trusted_list_still_binds(k1: Signer, k2: Signer) -> None:
    lines = chain(k1, 2)
    lines.append(then(k2, lines))
    scan = scan_lines(lines, trusted=[trusted(k1, "key one")], key_changes=True)
    assert scan.finding == Finding(
        Reason.forged, 3, 2, f"it is validly signed, but by key {k2.fingerprint}, not by key one"
    )
    assert scan.signers == [k1.fingerprint]


# --- what passed before the first bad line ------------------------------------------------


def test_records_and_hashes_stop_before_the_first_bad_line(k1: Signer) -> None:
    lines = chain(k1, 5)
    lines[3] = b"garbage"
    scan = scan_lines(lines, trusted=None)
    assert scan.finding == Finding(
        Reason.malformed, 4, 3, "not JSON (Expecting value: line 1 column 1 (char 0))"
    )
    assert scan.records == [parse_line(line) for line in lines[:3]]
    assert scan.hashes == [sha(line) for line in lines[:3]]


def test_a_malformed_first_line(k1: Signer) -> None:
    scan = scan_lines([b"[1]", *chain(k1, 1)], trusted=None)
    assert scan.finding == Finding(Reason.malformed, 1, 0, "not a JSON object")
    assert (scan.records, scan.hashes, scan.signers) == ([], [], [])


def test_a_malformed_line_is_found_even_if_a_later_one_would_be_too(k1: Signer) -> None:
    lines = chain(k1, 3)
    lines[1] = b"[1]"
    lines[2] = b"[2]"
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.malformed, 2, 1, "not a JSON object"
    )


# --- _authentic ---------------------------------------------------------------------------


def test_an_undecodable_key_field_is_an_edit(k1: Signer) -> None:
    lines = chain(k1, 1)
    lines.append(then(k1, lines, key="not base64!"))
    with pytest.raises(ValueError) as err:
        decode_public_key("not base64!")
    scan = scan_lines(lines, trusted=None)
    assert scan.finding == Finding(Reason.edited, 2, 1, f"its key field is unusable: {err.value}")
    assert len(scan.records) == 1


def test_a_key_field_that_cannot_verify_is_an_edit(k1: Signer) -> None:
    xkey = x25519.X25519PrivateKey.generate().public_key()
    field = base64.b64encode(spki_der(xkey)).decode()
    lines = [then(k1, [], key=field)]
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.edited, 1, 0, "its key field is unusable: unsupported key type X25519PublicKey"
    )


def test_a_signature_that_does_not_match_is_an_edit(k1: Signer, k2: Signer) -> None:
    lines = chain(k1, 2)
    lines.append(then(k2, lines, key=k1.key_field))  # signed by k2, naming k1
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.edited,
        3,
        2,
        "its signature does not match its content: it was changed after it was signed",
    )


# --- _forged ------------------------------------------------------------------------------


def test_forged_after_trust_on_first_use_suggests_certificates(k1: Signer, k2: Signer) -> None:
    lines = chain(k1, 2)
    lines.append(then(k2, lines, node="site-2"))  # another node name: no certificate to name
    scan = scan_lines(lines, trusted=None)
    assert scan.finding == Finding(
        Reason.forged,
        3,
        2,
        f"it is validly signed, but by key {k2.fingerprint}, not by the key that signed "
        f"the ledger's first record ({k1.fingerprint}); if the node's key was renewed, "
        "pass its certificates",
    )
    assert scan.signers == [k1.fingerprint]


def test_forged_lists_every_trusted_key(k1: Signer, k2: Signer) -> None:
    k3 = Signer(generate_key())
    lines = [then(k3, [])]
    trust = [trusted(k1, "key one"), trusted(k2, "key two")]
    assert scan_lines(lines, trusted=trust).finding == Finding(
        Reason.forged,
        1,
        0,
        f"it is validly signed, but by key {k3.fingerprint}, not by key one or key two",
    )


def test_forged_names_the_certificates_nodes_when_the_ledger_is_anothers(
    k1: Signer, k2: Signer
) -> None:
    k3 = Signer(generate_key())
    lines = [then(k3, [], node="site-9")]
    trust = [
        trusted(k1, "cert B", node="site-b", jurisdiction="EU", certificate=True),
        trusted(k2, "cert A", node="site-a", jurisdiction="EU", certificate=True),
        trusted(k2, "cert A again", node="site-a", jurisdiction="EU", certificate=True),
        trusted(k2, "plain key", node="site-c"),  # not a certificate: names nobody
        trusted(k2, "nameless", certificate=True),
    ]
    assert scan_lines(lines, trusted=trust).finding == Finding(
        Reason.forged,
        1,
        0,
        f"it is validly signed, but by key {k3.fingerprint}, not by cert B or cert A or "
        "cert A again or plain key or nameless; the certificate names site-a, site-b, "
        "but the ledger's node is site-9",
    )


def test_forged_does_not_name_certificates_of_the_ledgers_own_node(k1: Signer, k2: Signer) -> None:
    lines = [then(k2, [], node="site-b")]
    trust = [trusted(k1, "cert B", node="site-b", jurisdiction="EU", certificate=True)]
    assert scan_lines(lines, trusted=trust).finding == Finding(
        Reason.forged, 1, 0, f"it is validly signed, but by key {k2.fingerprint}, not by cert B"
    )


def test_forged_by_a_plain_key_with_a_node_names_no_certificate(k1: Signer, k2: Signer) -> None:
    lines = [then(k2, [], node="site-9")]
    trust = [trusted(k1, "plain", node="site-1", jurisdiction="EU")]
    assert scan_lines(lines, trusted=trust).finding == Finding(
        Reason.forged, 1, 0, f"it is validly signed, but by key {k2.fingerprint}, not by plain"
    )


# --- _canonical ---------------------------------------------------------------------------


def test_a_line_that_is_not_canonical_is_an_edit(k1: Signer) -> None:
    lines = chain(k1, 3)
    lines[1] = lines[1].replace(b'"seq":1,', b'"seq": 1,')
    scan = scan_lines(lines, trusted=None)
    assert scan.finding == Finding(
        Reason.edited, 2, 1, "its line is not the canonical form of the record: bytes were changed"
    )


# --- _identity ----------------------------------------------------------------------------


def test_identity_comes_from_the_signers_certificate(k1: Signer) -> None:
    cert = trusted(k1, "c", node="site-1", jurisdiction="EU", certificate=True)
    lines = [then(k1, [], jurisdiction="US")]
    assert scan_lines(lines, trusted=[cert]).finding == Finding(
        Reason.identity,
        1,
        0,
        "it names node site-1 (US), but its signer's certificate is site-1 (EU)",
    )
    lines = [then(k1, [], node="site-2")]
    assert scan_lines(lines, trusted=[cert]).finding == Finding(
        Reason.identity,
        1,
        0,
        "it names node site-2 (EU), but its signer's certificate is site-1 (EU)",
    )
    assert scan_lines(chain(k1, 2), trusted=[cert]).finding is None


def test_a_certificate_without_jurisdiction_binds_only_the_node(k1: Signer) -> None:
    cert = trusted(k1, "c", node="site-1", certificate=True)
    assert scan_lines([then(k1, [], jurisdiction="US")], trusted=[cert]).finding is None
    assert scan_lines([then(k1, [], node="site-2")], trusted=[cert]).finding == Finding(
        Reason.identity, 1, 0, "it names node site-2 (EU), but its signer's certificate is site-1"
    )


def test_without_a_certificate_the_first_record_binds_identity(k1: Signer) -> None:
    # A plain key (or a certificate key without a node) names nobody: the first record does.
    for key in (
        trusted(k1, "plain", node="site-x", jurisdiction="XX"),
        trusted(k1, "nameless", certificate=True),
        trusted(k1, "plain"),
    ):
        lines = [then(k1, [], node="site-7", jurisdiction="US")]
        lines.append(then(k1, lines, node="site-7", jurisdiction="US"))
        assert scan_lines(lines, trusted=[key]).finding is None
        lines.append(then(k1, lines, node="site-7", jurisdiction="EU"))
        assert scan_lines(lines, trusted=[key]).finding == Finding(
            Reason.identity,
            3,
            2,
            "it names node site-7 (EU), but the first record is site-7 (US)",
        )


def test_identity_is_checked_after_the_canonical_form(k1: Signer) -> None:
    lines = chain(k1, 1)
    lines.append(then(k1, lines, node="site-2").replace(b'"seq":1,', b'"seq": 1,'))
    finding = scan_lines(lines, trusted=None).finding
    assert finding is not None and finding.reason is Reason.edited


# --- _sequence ----------------------------------------------------------------------------


def test_a_copy_of_an_earlier_line(k1: Signer) -> None:
    lines = chain(k1, 4)
    lines.insert(3, lines[1])
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.reordered, 4, 3, "line 4 holds seq 1 where seq 3 belongs: a copy of line 2"
    )


def test_a_copy_of_the_first_line(k1: Signer) -> None:
    lines = chain(k1, 3)
    lines.insert(1, lines[0])
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.reordered, 2, 1, "line 2 holds seq 0 where seq 1 belongs: a copy of line 1"
    )


def test_a_seq_found_later_names_its_line(k1: Signer) -> None:
    lines = chain(k1, 6)
    lines[1], lines[4] = lines[4], lines[1]
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.reordered, 2, 1, "line 2 holds seq 4 where seq 1 belongs; seq 1 is at line 5"
    )


def test_the_first_later_holder_of_the_seq_is_named(k1: Signer) -> None:
    lines = chain(k1, 4)
    moved = lines.pop(1)
    lines += [moved, moved]  # seq 1 now at lines 4 and 5
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.reordered, 2, 1, "line 2 holds seq 2 where seq 1 belongs; seq 1 is at line 4"
    )


def test_a_later_holder_at_the_last_line_is_found(k1: Signer) -> None:
    lines = chain(k1, 3)
    lines[0], lines[2] = lines[2], lines[0]
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.reordered, 1, 0, "line 1 holds seq 2 where seq 0 belongs; seq 0 is at line 3"
    )


def test_a_later_malformed_line_holds_no_seq(k1: Signer) -> None:
    lines = chain(k1, 3)
    lines[1] = then(k1, lines[:1], seq=2)
    lines[2] = b"[1]"
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.removed, 2, 1, "line 2 holds seq 2 where seq 1 belongs: seq 1 is missing"
    )


def test_a_seq_that_goes_back_without_a_copy(k1: Signer) -> None:
    lines = chain(k1, 3)
    lines.append(then(k1, lines, seq=1))  # a new record claiming seq 1, chained on
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.reordered, 4, 3, "line 4 holds seq 1 where seq 3 belongs: seq goes back"
    )


def test_a_seq_that_goes_back_to_a_later_holder_names_the_holder(k1: Signer) -> None:
    lines = chain(k1, 2)
    lines.append(then(k1, lines, seq=0))  # line 3 says seq 0 (not a copy)
    lines.append(then(k1, lines, seq=2))  # line 4 holds seq 2
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.reordered, 3, 2, "line 3 holds seq 0 where seq 2 belongs; seq 2 is at line 4"
    )


def test_one_missing_seq(k1: Signer) -> None:
    lines = chain(k1, 2)
    lines.append(then(k1, lines, seq=3))
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.removed, 3, 2, "line 3 holds seq 3 where seq 2 belongs: seq 2 is missing"
    )


def test_several_missing_seqs(k1: Signer) -> None:
    lines = chain(k1, 2)
    lines.append(then(k1, lines, seq=6))
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.removed,
        3,
        2,
        "line 3 holds seq 6 where seq 2 belongs: seq 2..5 (4 records) are missing",
    )
    lines = [then(k1, [], seq=2)]
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.removed,
        1,
        0,
        "line 1 holds seq 2 where seq 0 belongs: seq 0..1 (2 records) are missing",
    )


# --- _link --------------------------------------------------------------------------------


def test_a_first_record_not_chained_to_genesis(k1: Signer) -> None:
    lines = [record(k1, 0, "f" * 64).line()]
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.edited, 1, 0, f"the first record's prev is not {GENESIS_PREV}"
    )


def test_a_record_chained_to_something_else_blames_the_pair(k1: Signer) -> None:
    lines = chain(k1, 3)
    lines.append(record(k1, 3, "e" * 64).line())
    scan = scan_lines(lines, trusted=None)
    assert scan.finding == Finding(
        Reason.edited,
        3,
        2,
        f"seq 2 (sha256 {sha(lines[2])}) is not the record that seq 3 (line 4) was chained "
        f"to (prev {'e' * 64}): one of them was replaced by another record signed with "
        "the same key",
    )
    assert scan.hashes == [sha(line) for line in lines[:3]]


# --- _checkpoint --------------------------------------------------------------------------


def test_a_checkpoint_record_naming_the_record_before_it_passes(k1: Signer) -> None:
    lines = chain(k1, 3)
    lines.append(
        then(k1, lines, event="checkpoint", detail={"head_seq": 2, "head_sha256": sha(lines[2])})
    )
    lines.append(then(k1, lines))
    scan = scan_lines(lines, trusted=None)
    assert scan.finding is None and len(scan.records) == 5


NEEDS = "a checkpoint needs a record before it, and detail {head_seq, head_sha256}"


def test_a_checkpoint_first_is_malformed(k1: Signer) -> None:
    lines = [then(k1, [], event="checkpoint", detail={"head_seq": 0, "head_sha256": "0" * 64})]
    assert scan_lines(lines, trusted=None).finding == Finding(Reason.malformed, 1, 0, NEEDS)


@pytest.mark.parametrize(
    "detail",
    [{}, {"head_seq": 1}, {"head_sha256": "x"}, {"head_seq": 1, "head_sha256": "x", "more": 1}],
)
def test_a_checkpoint_with_other_detail_is_malformed(k1: Signer, detail: dict[str, Any]) -> None:
    lines = chain(k1, 2)
    lines.append(then(k1, lines, event="checkpoint", detail=detail))
    assert scan_lines(lines, trusted=None).finding == Finding(Reason.malformed, 3, 2, NEEDS)


@pytest.mark.parametrize(("seq", "which"), [(0, "good"), (1, "bad"), (2, "good")])
def test_a_checkpoint_naming_another_head_is_an_edit(k1: Signer, seq: int, which: str) -> None:
    lines = chain(k1, 2)
    digest = sha(lines[1]) if which == "good" else "a" * 64
    lines.append(
        then(k1, lines, event="checkpoint", detail={"head_seq": seq, "head_sha256": digest})
    )
    assert scan_lines(lines, trusted=None).finding == Finding(
        Reason.edited,
        3,
        2,
        f"the checkpoint names seq {seq} sha256 {digest}, but seq 1 hashes to "
        f"{sha(lines[1])}: the records before it were rewritten",
    )


def test_other_events_may_carry_any_detail(k1: Signer) -> None:
    lines = [then(k1, [], detail={"head_seq": 5})]
    lines.append(then(k1, lines, event="export", detail={"head_seq": 0, "head_sha256": "x"}))
    assert scan_lines(lines, trusted=None).finding is None


def test_a_line_nested_past_the_parsers_depth_is_named_as_such() -> None:
    assert parse_line(b"[" * 100_000) == "not JSON (nested too deeply to parse)"
