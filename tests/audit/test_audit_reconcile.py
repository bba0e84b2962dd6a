"""reconcile: the two ends of a link agree, and each disagreement is reported exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_helpers import PLAN, digest, lines_of, write_lines

from fedsov.audit import AuditLedger, MismatchKind, Signer, read_ledger, reconcile
from fedsov.exceptions import AuditError
from fedsov.pki import NodePaths

ROUNDS = (1, 2, 3)


def model(r: int) -> str:
    return digest(f"global model {r}")


def update(r: int, site: str = "site-1") -> str:
    return digest(f"{site} update {r}")


@pytest.fixture
def link(tmp_path: Path, pki: dict[str, NodePaths], site_signer: Signer) -> tuple[Path, Path]:
    """A site's and its aggregator's ledgers over three rounds; agg-eu also serves site-2."""
    site_path, agg_path = tmp_path / "site-1.jsonl", tmp_path / "agg-eu.jsonl"
    agg_signer = Signer.load(pki["agg-eu"].key)
    common = {"plan_sha256": PLAN, "checkpoint_every": 4}
    with (
        AuditLedger.open(
            site_path, signer=site_signer, node="site-1", jurisdiction="EU", **common
        ) as site,
        AuditLedger.open(
            agg_path, signer=agg_signer, node="agg-eu", jurisdiction="EU", **common
        ) as agg,
    ):
        for r in ROUNDS:
            for name in ("site-1", "site-2"):
                agg.append(event="model-sent", round=r, peer=name, content_sha256=model(r))
            site.append(
                event="model-received",
                round=r,
                peer="agg-eu",
                peer_jurisdiction="EU",
                content_sha256=model(r),
            )
            site.append(
                event="update-sent",
                round=r,
                peer="agg-eu",
                peer_jurisdiction="EU",
                content_sha256=update(r),
                epsilon=0.3 * r,
                delta=1e-5,
                decision="allowed",
            )
            for name in ("site-1", "site-2"):
                agg.append(
                    event="update-received",
                    round=r,
                    peer=name,
                    peer_jurisdiction="EU",
                    content_sha256=update(r, name),
                    epsilon=0.3 * r,
                )
            agg.append(event="export", round=r, peer="coordinator", content_sha256=digest("x"))
    return site_path, agg_path


def rewrite(path: Path, seq: int, **changes: object) -> None:
    """Change fields of one record in place (reconcile reads, it does not verify)."""
    lines = lines_of(path)
    obj = json.loads(lines[seq])
    obj.update(changes)
    lines[seq] = json.dumps(obj).encode() + b"\n"
    write_lines(path, lines)


def seq_of(path: Path, event: str, round: int) -> int:
    return next(r.seq for r in read_ledger(path) if r.event == event and r.round == round)


def test_matching_ledgers_reconcile(link: tuple[Path, Path]) -> None:
    site, agg = link
    report = reconcile(site, agg)
    assert report.ok and report.mismatches == ()
    assert (report.a, report.b, report.matched) == ("site-1", "agg-eu", 2 * len(ROUNDS))
    assert reconcile(agg, site).matched == report.matched
    assert report.to_dict() == {
        "a": "site-1",
        "b": "agg-eu",
        "ok": True,
        "matched": 6,
        "mismatches": [],
    }


def test_a_received_hash_changed_on_one_side_is_the_one_mismatch(link: tuple[Path, Path]) -> None:
    site, agg = link
    at = next(
        r.seq
        for r in read_ledger(agg)
        if r.event == "update-received" and r.round == 2 and r.peer == "site-1"
    )
    rewrite(agg, at, content_sha256=digest("something else"))
    report = reconcile(site, agg)
    assert report.matched == 5
    [m] = report.mismatches
    assert (m.kind, m.flow, m.round, m.sender, m.receiver) == (
        MismatchKind.hash_differs,
        "update",
        2,
        "site-1",
        "agg-eu",
    )
    assert m.sent is not None and m.sent.content_sha256 == update(2)
    assert m.received is not None and m.received.seq == at
    assert m.received.content_sha256 == digest("something else")


def test_a_transfer_missing_on_one_side_is_reported(link: tuple[Path, Path]) -> None:
    site, agg = link
    at = seq_of(site, "model-received", 3)
    lines = lines_of(site)
    del lines[at]
    write_lines(site, lines)
    [m] = reconcile(site, agg).mismatches
    assert (m.kind, m.flow, m.round, m.sender, m.receiver) == (
        MismatchKind.not_received,
        "model",
        3,
        "agg-eu",
        "site-1",
    )
    assert m.received is None and m.sent is not None
    assert "site-1 has no record of receiving it" in m.message


def test_a_receipt_the_sender_never_recorded_is_reported(link: tuple[Path, Path]) -> None:
    site, agg = link
    rewrite(site, seq_of(site, "update-sent", 1), event="update-withdrawn")
    [m] = reconcile(agg, site).mismatches
    assert (m.kind, m.round, m.sender, m.receiver) == (
        MismatchKind.not_sent,
        1,
        "site-1",
        "agg-eu",
    )
    assert m.sent is None and m.received is not None


def test_a_wrong_peer_jurisdiction_is_reported(link: tuple[Path, Path]) -> None:
    site, agg = link
    rewrite(site, seq_of(site, "update-sent", 2), peer_jurisdiction="US")
    [m] = reconcile(site, agg).mismatches
    assert (m.kind, m.round) == (MismatchKind.jurisdiction_differs, 2)
    assert "site-1 recorded agg-eu in US" in m.message and "agg-eu's ledger says EU" in m.message


def test_bad_input_is_an_error(tmp_path: Path, link: tuple[Path, Path]) -> None:
    site, _ = link
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(AuditError, match="ledger B is empty"):
        reconcile(site, empty)
    with pytest.raises(AuditError, match="both ledgers are site-1's"):
        reconcile(site, site)
    with pytest.raises(AuditError, match="file not found"):
        reconcile(site, tmp_path / "none.jsonl")
