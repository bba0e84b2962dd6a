"""A node without a key keeps a null trail: every event is accepted, nothing is written."""

from __future__ import annotations

from pathlib import Path

from fedsov.audit.trail import NullAuditTrail, open_audit_trail
from fedsov.pki.identity import NodeIdentity, Role


def test_without_a_key_the_trail_records_nothing_anywhere(tmp_path: Path) -> None:
    ledger = tmp_path / "audit" / "ledger.jsonl"
    trail = open_audit_trail(ledger, None, checkpoints=tmp_path / "audit" / "checkpoints")
    assert isinstance(trail, NullAuditTrail)
    peer = NodeIdentity("paris", Role.site, "EU", "demo")
    trail.model_received(round=1, upstream="hub", upstream_jurisdiction="EU", sha256="a" * 64)
    trail.declined(round=1, peer="hub", peer_jurisdiction="EU", code="x", reason="y")
    trail.refused(peer="hub", peer_jurisdiction="IN", decision="residency", reason="z")
    trail.model_sent(round=1, peer=peer, sha256="b" * 64)
    trail.model_published(
        round=1, sha256="c" * 64, parent=None, contributors=[], sites=[], regions=[], metrics={}
    )
    assert trail.head() is None and trail.node == ""
    trail.close()
    assert list(tmp_path.iterdir()) == []


def test_without_a_ledger_path_the_trail_is_null_too() -> None:
    assert isinstance(open_audit_trail(None, None), NullAuditTrail)
