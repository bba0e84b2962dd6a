"""A participant's signed statement of whose data is behind its update.

The sender signs, with the key of its mTLS certificate (the key its audit ledger
signs with), the canonical JSON of federation, round, task, payload hash, sorted
contributors and its ledger head, and sends the signature in the update header. The
receiver verifies it with the public key of the certificate the peer presented, so
the lineage it records is the sender's own word, bound to the sender's ledger.
"""

from __future__ import annotations

from cryptography import x509

from fedsov.audit.record import canonical_json
from fedsov.audit.signing import Signer, verify_signature
from fedsov.exceptions import ProtocolError
from fedsov.messages import UpdateHeader

__all__ = ["STATEMENT_KIND", "sign_statement", "statement_bytes", "verify_statement"]

STATEMENT_KIND = "fedsov-contributors-v1"


def statement_bytes(federation: str, header: UpdateHeader) -> bytes:
    """The canonical bytes a contributors statement signs."""
    head = header.audit_head
    return canonical_json(
        {
            "kind": STATEMENT_KIND,
            "federation": federation,
            "round": header.round,
            "task_id": header.task_id,
            "payload_sha256": header.payload_sha256,
            "contributors": sorted(header.contributors),
            "audit_head": None if head is None else {"seq": head.seq, "sha256": head.sha256},
        }
    )


def sign_statement(signer: Signer, federation: str, header: UpdateHeader) -> str:
    """The base64 signature of ``header``'s statement (its audit head must be set)."""
    return signer.sign(statement_bytes(federation, header))


def verify_statement(certificate_der: bytes, federation: str, header: UpdateHeader) -> None:
    """Raise ProtocolError unless ``header`` carries a statement that the key of the
    certificate (DER) signed, over the header's own audit head."""
    if not header.contributors_signature:
        raise ProtocolError(
            "the update carries no signed contributors statement "
            "(contributors_signature): an aggregator signs its contributors and audit head"
        )
    if header.audit_head is None:
        raise ProtocolError(
            "the contributors statement needs the sender's audit head (audit_checkpoint)"
        )
    key = x509.load_der_x509_certificate(certificate_der).public_key()
    if not verify_signature(
        key, header.contributors_signature, statement_bytes(federation, header)
    ):
        raise ProtocolError(
            "the contributors statement does not verify with the key of the sender's "
            "certificate: its contributors, audit head, task or payload hash differ from "
            "what was signed, or another key signed it"
        )
