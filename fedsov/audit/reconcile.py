"""Reconcile the ledgers of the two ends of a link: does each agree on what crossed it?

What A says it sent to B (``update-sent`` or ``model-sent``, peer B) must match what B
says it received from A (``update-received`` or ``model-received``, peer A), round by
round, by content hash; and each side must have recorded the other's jurisdiction as
the other's ledger states it. Reconciling reads records without verifying their
signatures: run ``verify_ledger`` on each ledger first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from fedsov.audit.ledger import read_ledger
from fedsov.audit.record import AuditEvent, AuditRecord
from fedsov.exceptions import AuditError

__all__ = ["FLOWS", "Mismatch", "MismatchKind", "ReconcileReport", "reconcile"]

FLOWS: dict[str, tuple[AuditEvent, AuditEvent]] = {
    "update": (AuditEvent.update_sent, AuditEvent.update_received),
    "model": (AuditEvent.model_sent, AuditEvent.model_received),
}
"""Each flow across a link: the sender's event and the receiver's event."""


class MismatchKind(StrEnum):
    """How the two ends of a link disagree."""

    not_received = "not-received"
    """The sender recorded sending; the receiver has no record of receiving."""
    not_sent = "not-sent"
    """The receiver recorded receiving; the sender has no record of sending."""
    hash_differs = "hash-differs"
    """Both recorded the transfer, with different content hashes."""
    jurisdiction_differs = "jurisdiction-differs"
    """One side recorded a peer jurisdiction that the peer's own ledger does not state."""


@dataclass(frozen=True)
class Mismatch:
    """One disagreement; ``sent`` and ``received`` are the records involved, if any."""

    kind: MismatchKind
    flow: str
    round: int | None
    sender: str
    receiver: str
    sent: AuditRecord | None
    received: AuditRecord | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "flow": self.flow,
            "round": self.round,
            "sender": self.sender,
            "receiver": self.receiver,
            "sent_seq": None if self.sent is None else self.sent.seq,
            "received_seq": None if self.received is None else self.received.seq,
            "sent_sha256": None if self.sent is None else self.sent.content_sha256,
            "received_sha256": None if self.received is None else self.received.content_sha256,
            "message": self.message,
        }


@dataclass(frozen=True)
class ReconcileReport:
    """The link between nodes ``a`` and ``b``: transfers both recorded alike, and the rest."""

    a: str
    b: str
    matched: int
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "ok": self.ok,
            "matched": self.matched,
            "mismatches": [m.to_dict() for m in self.mismatches],
        }


Ledger = Path | Sequence[AuditRecord]


def reconcile(ledger_a: Ledger, ledger_b: Ledger) -> ReconcileReport:
    """Every transfer between the two ledgers' nodes that the two ends record differently.

    Each ledger is a path or its records. AuditError when a ledger is empty or
    unreadable, or both are the same node's.
    """
    a, b = _records(ledger_a, "A"), _records(ledger_b, "B")
    node_a, node_b = a[0].node, b[0].node
    if node_a == node_b:
        raise AuditError(f"both ledgers are {node_a}'s: reconcile the two ends of a link")
    matched, mismatches = 0, []
    for sender, receiver in ((a, b), (b, a)):
        for flow in FLOWS:
            count, found = _reconcile_flow(flow, sender, receiver)
            matched += count
            mismatches.extend(found)
    mismatches.sort(key=lambda m: (m.round if m.round is not None else -1, m.flow, m.sender))
    return ReconcileReport(a=node_a, b=node_b, matched=matched, mismatches=tuple(mismatches))


def _records(ledger: Ledger, label: str) -> Sequence[AuditRecord]:
    records = read_ledger(ledger) if isinstance(ledger, Path) else ledger
    if not records:
        raise AuditError(f"ledger {label} is empty: nothing to reconcile")
    return records


def _reconcile_flow(
    flow: str, sender: Sequence[AuditRecord], receiver: Sequence[AuditRecord]
) -> tuple[int, list[Mismatch]]:
    send_event, receive_event = FLOWS[flow]
    src, dst = sender[0], receiver[0]
    sent: dict[int | None, list[AuditRecord]] = defaultdict(list)
    received: dict[int | None, list[AuditRecord]] = defaultdict(list)
    for r in sender:
        if r.event == send_event and r.peer == dst.node:
            sent[r.round].append(r)
    for r in receiver:
        if r.event == receive_event and r.peer == src.node:
            received[r.round].append(r)
    matched, found = 0, []
    for rnd in sorted(sent.keys() | received.keys(), key=lambda x: -1 if x is None else x):
        pairs, left_sent, left_received = _pair(sent[rnd], received[rnd])
        matched += len(pairs)
        issue = _Issue(flow, rnd, src.node, dst.node)
        for s, r in pairs:
            found.extend(issue.jurisdictions(s, r, src.jurisdiction, dst.jurisdiction))
        for s, r in zip(left_sent, left_received, strict=False):
            found.append(issue.hash_differs(s, r))
        found.extend(issue.not_received(s) for s in left_sent[len(left_received) :])
        found.extend(issue.not_sent(r) for r in left_received[len(left_sent) :])
    return matched, found


def _pair(
    sent: list[AuditRecord], received: list[AuditRecord]
) -> tuple[list[tuple[AuditRecord, AuditRecord]], list[AuditRecord], list[AuditRecord]]:
    """Pair records with equal content hashes, in order; return the pairs and the rest."""
    pairs, rest = [], list(received)
    left = []
    for s in sent:
        match = next((r for r in rest if r.content_sha256 == s.content_sha256), None)
        if match is None:
            left.append(s)
        else:
            rest.remove(match)
            pairs.append((s, match))
    return pairs, left, rest


@dataclass(frozen=True)
class _Issue:
    flow: str
    round: int | None
    sender: str
    receiver: str

    def _make(
        self,
        kind: MismatchKind,
        sent: AuditRecord | None,
        received: AuditRecord | None,
        message: str,
    ) -> Mismatch:
        where = "" if self.round is None else f"round {self.round}: "
        return Mismatch(
            kind, self.flow, self.round, self.sender, self.receiver, sent, received, where + message
        )

    def not_received(self, s: AuditRecord) -> Mismatch:
        return self._make(
            MismatchKind.not_received,
            s,
            None,
            f"{self.sender} recorded sending {self.flow} {s.content_sha256} to {self.receiver} "
            f"(seq {s.seq}); {self.receiver} has no record of receiving it",
        )

    def not_sent(self, r: AuditRecord) -> Mismatch:
        return self._make(
            MismatchKind.not_sent,
            None,
            r,
            f"{self.receiver} recorded receiving {self.flow} {r.content_sha256} from "
            f"{self.sender} (seq {r.seq}); {self.sender} has no record of sending it",
        )

    def hash_differs(self, s: AuditRecord, r: AuditRecord) -> Mismatch:
        return self._make(
            MismatchKind.hash_differs,
            s,
            r,
            f"{self.sender} recorded sending {self.flow} {s.content_sha256} (seq {s.seq}), "
            f"{self.receiver} recorded receiving {r.content_sha256} (seq {r.seq})",
        )

    def jurisdictions(
        self, s: AuditRecord, r: AuditRecord, sender_j: str, receiver_j: str
    ) -> list[Mismatch]:
        out = []
        for record, who, peer, actual in (
            (s, self.sender, self.receiver, receiver_j),
            (r, self.receiver, self.sender, sender_j),
        ):
            if record.peer_jurisdiction not in (None, actual):
                out.append(
                    self._make(
                        MismatchKind.jurisdiction_differs,
                        s,
                        r,
                        f"{who} recorded {peer} in {record.peer_jurisdiction} (seq {record.seq})"
                        f", but {peer}'s ledger says {actual}",
                    )
                )
        return out
