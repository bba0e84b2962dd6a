"""What a running node writes in its audit ledger: one method per event it witnesses.

The record conventions (events, peers, details) live here and in docs/audit.md, so
the coordinator, the regional aggregators and the sites write the same records for
the same facts. Contents never go in a record: payload and model hashes do.

Bounded: text a peer supplied is capped (``MAX_TEXT``), refusals are counted per
interval (``fedsov.audit.refusals``), and what is remembered to record an event once
covers the latest ``KEEP_ROUNDS`` rounds only.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from fedsov.audit.checkpoint import Checkpoint, append_checkpoint
from fedsov.audit.ledger import AuditLedger
from fedsov.audit.record import AuditEvent, AuditRecord
from fedsov.audit.refusals import RefusalCount, RefusalCounter
from fedsov.audit.signing import Signer
from fedsov.audit.statement import sign_statement
from fedsov.messages import AuditHead, PrivacyLevel, PrivacyReport, UpdateHeader
from fedsov.pki.identity import NodeIdentity
from fedsov.pki.tls import TlsMaterial
from fedsov.randomness import REPRODUCIBLE_ENV, reproducible

__all__ = [
    "KEEP_ROUNDS",
    "MAX_CODE",
    "MAX_TEXT",
    "AuditTrail",
    "NullAuditTrail",
    "RecentKeys",
    "cap_text",
    "open_audit_trail",
]

log = logging.getLogger("fedsov.audit")

MAX_TEXT = 512  # characters of a peer's free text (reasons) kept in a record
MAX_CODE = 64  # characters of a peer's decision code
KEEP_ROUNDS = 4  # rounds whose events are remembered, to record each once


def cap_text(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters cut]"


class RecentKeys:
    """Keys seen, by round, for the latest ``rounds`` rounds (older ones are forgotten,
    so memory is bounded; a key of the current round is always remembered)."""

    def __init__(self, rounds: int = KEEP_ROUNDS) -> None:
        self.rounds = rounds
        self._by_round: dict[int, set[Hashable]] = {}

    def add(self, round: int | None, key: Hashable) -> bool:
        """Remember ``key``; False when it was remembered already."""
        number = -1 if round is None else round
        keys = self._by_round.setdefault(number, set())
        if key in keys:
            return False
        keys.add(key)
        while len(self._by_round) > self.rounds:
            del self._by_round[min(r for r in self._by_round if r != number)]
        return True

    def __contains__(self, item: tuple[int | None, Hashable]) -> bool:
        round, key = item
        return key in self._by_round.get(-1 if round is None else round, ())


def _dp(privacy: PrivacyReport) -> dict[str, Any]:
    if not privacy.enabled:
        return {"level": "none"}
    site_level = privacy.accountant.startswith("rdp-replace-one")
    clipped_update = site_level or privacy.level is PrivacyLevel.UPDATE
    return {
        "level": "site" if site_level else privacy.effective_level.value,
        "noise_multiplier": privacy.noise_multiplier,
        "clip" if clipped_update else "max_grad_norm": privacy.max_grad_norm,
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
        self,
        ledger: AuditLedger,
        *,
        checkpoints: Path | None = None,
        federation: str = "",
        refusals: RefusalCounter | None = None,
    ) -> None:
        """``federation``: what this node's contributors statements name."""
        self.ledger = ledger
        self.checkpoints = checkpoints
        self.federation = federation
        self.refusals = refusals or RefusalCounter()
        # What is recorded already: a restart or a resent update is not recorded twice.
        self._once: dict[str, RecentKeys] = _remembered(ledger.records)

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

    def last_record(self) -> tuple[int, str] | None:
        """The ledger's last record ``(seq, sha256)``, without writing anything."""
        head = self.ledger.head
        return None if head is None else (head.seq, head.sha256)

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
        """A verified download; once per (round, upstream, model), as ``model_sent``."""
        if not self._first(AuditEvent.model_received, round, (upstream, sha256)):
            return
        self._write(
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
        self._write(
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
        self._write(
            event=AuditEvent.task_declined,
            round=round,
            peer=peer,
            peer_jurisdiction=peer_jurisdiction,
            decision=cap_text(code, MAX_CODE) or None,
            detail={"reason": cap_text(reason)},
        )

    def refused(
        self, *, peer: str, peer_jurisdiction: str | None, decision: str, reason: str
    ) -> None:
        """The policy stopped something: a peer not admitted, an upstream not allowed.

        Counted per (peer, decision): the first is written at once, the rest of the
        interval as one record with their count (``fedsov.audit.refusals``).
        """
        counts = self.refusals.add(
            peer, peer_jurisdiction, cap_text(decision, MAX_CODE), cap_text(reason)
        )
        self._write_refusals(counts)

    # ----- as an aggregator (coordinator, or a region towards its sites) ------------

    def update_received(self, peer: NodeIdentity, header: UpdateHeader) -> None:
        """An update accepted; once per (round, peer, payload), however often it is sent."""
        key = (peer.name, header.payload_sha256)
        if (header.round, key) in self._once[AuditEvent.update_received]:
            return
        p = header.privacy
        self._write(
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
        self._first(AuditEvent.update_received, header.round, key)
        if header.audit_head is not None and self.checkpoints is not None:
            head = header.audit_head
            append_checkpoint(
                self.checkpoints / f"{peer.name}.jsonl",
                Checkpoint(peer.name, head.seq, head.sha256),
            )

    def model_sent(self, *, round: int | None, peer: NodeIdentity, sha256: str) -> None:
        """A download served; once per (round, peer, model), however often it is asked."""
        if not self._first(AuditEvent.model_sent, round, (peer.name, sha256)):
            return
        self._write(
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
        if (round, sha256) in self._once[AuditEvent.model_published]:
            return
        self._write(
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
        self._first(AuditEvent.model_published, round, sha256)

    def secure_aggregate(
        self,
        *,
        round: int,
        protocol: str,
        threshold: int,
        neighbours: int,
        ring_bits: int,
        survivors: Sequence[str],
        dropped: Sequence[str],
        failure: str = "",
    ) -> None:
        """How a round was securely aggregated: the protocol, the threshold, who is in the
        sum and who dropped (never a key, a mask or a share); also a round that failed."""
        self._write(
            event=AuditEvent.secure_aggregate,
            round=round,
            detail={
                "protocol": protocol,
                "threshold": threshold,
                "neighbours": neighbours,
                "ring_bits": ring_bits,
                "survivors": list(survivors),
                "dropped": list(dropped),
                "completed": not failure,
                "failure": failure,
            },
        )

    def stopped(
        self, *, kind: str, detail: str, exit_code: int, round: int | None, operator: bool
    ) -> None:
        """The federation stopped before its last round: by a guardrail rule (``kind``,
        e.g. ``privacy-ceiling``) or by an operator; what happened, and the exit status."""
        self._write(
            event=AuditEvent.operator_stop if operator else AuditEvent.guardrail_stop,
            round=round,
            decision=cap_text(kind, MAX_CODE),
            detail={"kind": kind, "reason": cap_text(detail), "exit_code": exit_code},
        )

    def close(self) -> None:
        """Write the refusals still counted, then checkpoint and close the ledger."""
        self._write_refusals(self.refusals.drain())
        self.ledger.close()

    def _first(self, event: AuditEvent, round: int | None, key: Hashable) -> bool:
        """Remember ``key`` of ``event`` in ``round``; False when it was recorded already."""
        return self._once[event].add(round, key)

    def _write(self, **fields: Any) -> None:
        """One event, after the refusal counts whose interval ended."""
        self._write_refusals(self.refusals.due())
        self._append(**fields)

    def _write_refusals(self, counts: Iterable[RefusalCount]) -> None:
        for c in counts:
            self._append(
                event=AuditEvent.policy_refused,
                peer=c.peer,
                peer_jurisdiction=c.peer_jurisdiction,
                decision=c.decision,
                detail=c.detail(),
            )

    def _append(self, **fields: Any) -> None:
        """Every event method records through here (the null trail records nothing)."""
        self.ledger.append(**fields)


class NullAuditTrail(AuditTrail):
    """The trail of a node without a certificate (``--insecure``, local development):
    every event is accepted and recorded nowhere, so callers never test for a trail."""

    def __init__(self) -> None:  # no ledger, no checkpoints: nothing is written
        self.checkpoints = None
        self.federation = ""
        self.refusals = RefusalCounter()
        self._once = _remembered(())

    @property
    def node(self) -> str:
        return ""

    def _border(self, peer_jurisdiction: str | None) -> bool:
        return False

    def last_record(self) -> tuple[int, str] | None:
        return None

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


_ONCE = (
    AuditEvent.update_received,
    AuditEvent.model_sent,
    AuditEvent.model_received,
    AuditEvent.model_published,
)


def _remembered(records: Iterable[AuditRecord]) -> dict[str, RecentKeys]:
    """What ``records`` hold of the events recorded once, for their latest rounds."""
    once = {str(event): RecentKeys() for event in _ONCE}
    for r in records:
        if r.event in once:
            key = (
                r.content_sha256
                if r.event == AuditEvent.model_published
                else (r.peer, r.content_sha256)
            )
            once[r.event].add(r.round, key)
    return once
