"""What a running node writes in its audit ledger: one method per event it witnesses.

The record conventions (events, peers, details) live here and in docs/audit.md, so
the coordinator, the regional aggregators and the sites write the same records for
the same facts. Contents never go in a record: payload and model hashes do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from fedsov.audit.checkpoint import Checkpoint, append_checkpoint
from fedsov.audit.ledger import AuditLedger
from fedsov.audit.record import AuditEvent
from fedsov.audit.signing import Signer
from fedsov.audit.statement import sign_statement
from fedsov.messages import AuditHead, PrivacyReport, UpdateHeader
from fedsov.pki.identity import NodeIdentity
from fedsov.pki.tls import TlsMaterial
from fedsov.randomness import REPRODUCIBLE_ENV, reproducible

__all__ = ["AuditTrail", "NullAuditTrail", "open_audit_trail"]

log = logging.getLogger("fedsov.audit")


def _dp(privacy: PrivacyReport) -> dict[str, Any]:
    if not privacy.enabled:
        return {"level": "none"}
    site_level = privacy.accountant.startswith("rdp-replace-one")
    return {
        "level": "site" if site_level else "sample",
        "noise_multiplier": privacy.noise_multiplier,
        "clip" if site_level else "max_grad_norm": privacy.max_grad_norm,
        "sample_rate": privacy.sample_rate,
        "steps": privacy.total_steps,
        "accountant": privacy.accountant,
    }


def _update_detail(header: UpdateHeader) -> dict[str, Any]:
    return {
        "task_id": header.task_id,
        "num_examples": header.num_examples,
        "sites": max(1, len(header.contributors)),
        "contributors": list(header.contributors),
        "dp": _dp(header.privacy),
    }


class AuditTrail:
    """A node's audit ledger, and the checkpoints of its participants' ledgers it keeps."""

    def __init__(
        self, ledger: AuditLedger, *, checkpoints: Path | None = None, federation: str = ""
    ) -> None:
        """``federation``: what this node's contributors statements name."""
        self.ledger = ledger
        self.checkpoints = checkpoints
        self.federation = federation
        # What is recorded already: a restart or a resent update is not recorded twice.
        self._received = {
            (r.round, r.peer, r.content_sha256)
            for r in ledger.records
            if r.event == AuditEvent.update_received
        }
        self._published = {
            r.content_sha256 for r in ledger.records if r.event == AuditEvent.model_published
        }

    @classmethod
    def open(
        cls,
        path: Path,
        tls: TlsMaterial,
        *,
        plan_sha256: str | None = None,
        checkpoints: Path | None = None,
    ) -> AuditTrail:
        """The ledger at ``path``, signed with the node's TLS key, named by its certificate."""
        key = load_pem_private_key(tls.key_pem, password=None)
        ledger = AuditLedger.open(
            path,
            signer=Signer(key),
            node=tls.identity.name,
            jurisdiction=tls.identity.jurisdiction,
            plan_sha256=plan_sha256,
        )
        if reproducible():  # once per start: the compliance report flags this node
            ledger.append(
                event=AuditEvent.insecure_reproducible_mode,
                detail={
                    "env": REPRODUCIBLE_ENV,
                    "reason": "DP randomness derived from public seeds; no DP guarantee",
                },
            )
        return cls(ledger, checkpoints=checkpoints, federation=tls.identity.federation)

    @property
    def node(self) -> str:
        return self.ledger.node

    def _border(self, peer_jurisdiction: str | None) -> bool:
        return peer_jurisdiction is not None and peer_jurisdiction != self.ledger.jurisdiction

    # ----- as a participant (site, or a region towards its upstream) ----------------

    def head(self) -> AuditHead | None:
        """Checkpoint the ledger now; the upstream keeps it with the next update."""
        checkpoint = self.ledger.checkpoint() if len(self.ledger) else None
        if checkpoint is None:  # an empty ledger: record that nothing came before
            self.ledger.append(event="ledger-opened")  # (head: its own, not an event)
            checkpoint = self.ledger.checkpoint()
        return AuditHead(checkpoint.seq, checkpoint.sha256)

    def sign_contributors(self, header: UpdateHeader) -> str:
        """This node's signed statement of ``header``'s contributors and audit head."""
        return sign_statement(self.ledger.signer, self.federation, header)

    def model_received(
        self, *, round: int, upstream: str, upstream_jurisdiction: str | None, sha256: str
    ) -> None:
        self._append(
            event=AuditEvent.model_received,
            round=round,
            peer=upstream,
            peer_jurisdiction=upstream_jurisdiction,
            content_sha256=sha256,
        )

    def update_sent(
        self, *, upstream: str, upstream_jurisdiction: str | None, header: UpdateHeader
    ) -> None:
        """An upload the upstream acknowledged: what left this node, and where to."""
        p = header.privacy
        self._append(
            event=AuditEvent.update_sent,
            round=header.round,
            peer=upstream,
            peer_jurisdiction=upstream_jurisdiction,
            content_sha256=header.payload_sha256,
            epsilon=p.epsilon if p.enabled else None,
            delta=p.delta if p.enabled else None,
            decision="accepted",
            detail=_update_detail(header) | {"border": self._border(upstream_jurisdiction)},
        )

    def declined(
        self, *, round: int, peer: str, peer_jurisdiction: str | None, code: str, reason: str
    ) -> None:
        """A task refused: by this node (peer: its upstream) or by a participant."""
        self._append(
            event=AuditEvent.task_declined,
            round=round,
            peer=peer,
            peer_jurisdiction=peer_jurisdiction,
            decision=code,
            detail={"reason": reason},
        )

    def refused(
        self, *, peer: str, peer_jurisdiction: str | None, decision: str, reason: str
    ) -> None:
        """The policy stopped something: a peer not admitted, an upstream not allowed."""
        self._append(
            event=AuditEvent.policy_refused,
            peer=peer,
            peer_jurisdiction=peer_jurisdiction,
            decision=decision,
            detail={"reason": reason},
        )

    # ----- as an aggregator (coordinator, or a region towards its sites) ------------

    def update_received(self, peer: NodeIdentity, header: UpdateHeader) -> None:
        """An update accepted; once per (round, peer, payload), however often it is sent."""
        key = (header.round, peer.name, header.payload_sha256)
        if key in self._received:
            return
        p = header.privacy
        self._append(
            event=AuditEvent.update_received,
            round=header.round,
            peer=peer.name,
            peer_jurisdiction=peer.jurisdiction,
            content_sha256=header.payload_sha256,
            epsilon=p.epsilon if p.enabled else None,
            delta=p.delta if p.enabled else None,
            decision="accepted",
            detail=_update_detail(header)
            | {
                "border": self._border(peer.jurisdiction),
                # The sender's ledger head, kept here too: its ledger cannot lose the tail.
                "audit_head": asdict(header.audit_head) if header.audit_head else None,
                # Its signed statement of contributors and head, verified on receipt.
                "contributors_signature": header.contributors_signature or None,
            },
        )
        self._received.add(key)
        if header.audit_head is not None and self.checkpoints is not None:
            head = header.audit_head
            append_checkpoint(
                self.checkpoints / f"{peer.name}.jsonl",
                Checkpoint(peer.name, head.seq, head.sha256),
            )

    def model_sent(self, *, round: int | None, peer: NodeIdentity, sha256: str) -> None:
        self._append(
            event=AuditEvent.model_sent,
            round=round,
            peer=peer.name,
            peer_jurisdiction=peer.jurisdiction,
            content_sha256=sha256,
        )

    def model_published(
        self,
        *,
        round: int,
        sha256: str,
        parent: str | None,
        contributors: Sequence[str],
        sites: Sequence[str],
        regions: Sequence[str],
        metrics: Mapping[str, float],
    ) -> None:
        """A new global model version; once per model, also when a restart replays it."""
        if sha256 in self._published:
            return
        self._append(
            event=AuditEvent.model_published,
            round=round,
            content_sha256=sha256,
            detail={
                "parent": parent,
                "contributors": list(contributors),
                "sites": list(sites),
                "regions": list(regions),
                "metrics": dict(metrics),
            },
        )
        self._published.add(sha256)

    def close(self) -> None:
        self.ledger.close()

    def _append(self, **fields: Any) -> None:
        """Every event method records through here (the null trail records nothing)."""
        self.ledger.append(**fields)


class NullAuditTrail(AuditTrail):
    """The trail of a node without a certificate (``--insecure``, local development):
    every event is accepted and recorded nowhere, so callers never test for a trail."""

    def __init__(self) -> None:  # no ledger, no checkpoints: nothing is written
        self.checkpoints = None
        self.federation = ""
        self._received = set()
        self._published = set()

    @property
    def node(self) -> str:
        return ""

    def _border(self, peer_jurisdiction: str | None) -> bool:
        return False

    def head(self) -> AuditHead | None:
        return None

    def sign_contributors(self, header: UpdateHeader) -> str:
        return ""  # no key: the receiver counts this node only

    def close(self) -> None:
        pass

    def _append(self, **fields: Any) -> None:
        pass


def open_audit_trail(
    ledger: Path | None,
    tls: TlsMaterial | None,
    *,
    plan_sha256: str | None = None,
    checkpoints: Path | None = None,
) -> AuditTrail:
    """The signed trail in ``ledger`` (keeping its participants' ledger heads under
    ``checkpoints``); a NullAuditTrail without a ledger or a key to sign with."""
    if ledger is None or tls is None:
        return NullAuditTrail()
    return AuditTrail.open(ledger, tls, plan_sha256=plan_sha256, checkpoints=checkpoints)
