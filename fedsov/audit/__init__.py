"""Audit: each node's hash-chained, signed ledger of what it sent and received.

Records hold content hashes, never contents. ``verify_ledger`` finds the first
edited, reordered, removed, forged or malformed record, and a cut-off tail given
checkpoints held elsewhere; ``reconcile`` compares the ledgers of a link's two ends.
"""

from __future__ import annotations

from fedsov.audit.checkpoint import Checkpoint, append_checkpoint, read_checkpoints
from fedsov.audit.findings import Finding, Reason
from fedsov.audit.ledger import DEFAULT_CHECKPOINT_EVERY, AuditLedger, read_ledger
from fedsov.audit.reconcile import Mismatch, MismatchKind, ReconcileReport, reconcile
from fedsov.audit.record import GENESIS_PREV, AuditEvent, AuditRecord, canonical_json
from fedsov.audit.signing import Signer, load_certificates
from fedsov.audit.verify import VerifyResult, verify_ledger

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "GENESIS_PREV",
    "AuditEvent",
    "AuditLedger",
    "AuditRecord",
    "Checkpoint",
    "Finding",
    "Mismatch",
    "MismatchKind",
    "Reason",
    "ReconcileReport",
    "Signer",
    "VerifyResult",
    "append_checkpoint",
    "canonical_json",
    "load_certificates",
    "read_checkpoints",
    "read_ledger",
    "reconcile",
    "verify_ledger",
]
