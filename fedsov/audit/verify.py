"""``verify_ledger``: is a ledger what its node wrote, all of it, in order?

Given the node's certificate (or public key), every record must be signed by it;
without one, by the key of the first record (which proves integrity, not who signed).
Checkpoints held elsewhere add what a ledger alone cannot show: a cut-off tail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from fedsov.audit._chain import TrustedKey, parse_line, scan_lines, spki_der
from fedsov.audit._lines import read_lines
from fedsov.audit.checkpoint import Checkpoint
from fedsov.audit.findings import Finding, Reason
from fedsov.audit.record import AuditRecord
from fedsov.audit.signing import VerifyingKey, fingerprint
from fedsov.exceptions import AuditError
from fedsov.pki.identity import identity_from_certificate

__all__ = ["VerifyResult", "recheck_with_checkpoints", "verify_ledger"]


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify_ledger`` found; ``finding`` is the first bad record, None when intact.

    ``records`` counts the ledger's complete lines; ``head`` names the last record that
    passed; ``signers`` are the fingerprints of the keys that signed those records.
    """

    path: Path
    records: int
    head: Checkpoint | None
    node: str | None
    jurisdiction: str | None
    signers: tuple[str, ...]
    authenticated: bool
    """Whether signatures were checked against a certificate or key the caller gave."""
    checkpoints_checked: int
    finding: Finding | None
    notes: tuple[str, ...] = ()
    # the hash of each record that passed, in order (for ``recheck_with_checkpoints``)
    hashes: tuple[str, ...] = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.finding is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": str(self.path),
            "ok": self.ok,
            "records": self.records,
            "head": None if self.head is None else self.head.to_dict(),
            "node": self.node,
            "jurisdiction": self.jurisdiction,
            "signers": list(self.signers),
            "authenticated": self.authenticated,
            "checkpoints_checked": self.checkpoints_checked,
            "finding": None if self.finding is None else self.finding.to_dict(),
            "notes": list(self.notes),
        }


def verify_ledger(
    path: Path,
    *,
    certificate: x509.Certificate | Sequence[x509.Certificate] | None = None,
    public_key: PublicKeyTypes | None = None,
    checkpoints: Iterable[Checkpoint] = (),
) -> VerifyResult:
    """Check every record of the ledger at ``path`` and report the first bad one.

    Pass every certificate the node has used if its key was renewed. Checkpoints of
    other nodes are ignored. Raises AuditError (or PKIError) only for bad input: a
    missing ledger, an unusable certificate or key.
    """
    certs = [certificate] if isinstance(certificate, x509.Certificate) else [*(certificate or ())]
    trusted = [_certificate_key(c) for c in certs]
    if public_key is not None:
        trusted.append(_public_key(public_key))
    lines, torn = read_lines(path, what="ledger")
    scan = scan_lines(lines, trusted=trusted or None)
    notes = [] if not torn else [f"a torn last line ({len(torn)} bytes, never completed) ignored"]
    first = parse_line(lines[0]) if lines else None
    node: str | None
    jurisdiction: str | None
    if isinstance(first, AuditRecord):
        node, jurisdiction = first.node, first.jurisdiction
    elif certs:
        node, jurisdiction = trusted[0].node, trusted[0].jurisdiction
    else:
        node = jurisdiction = None
    if not trusted and scan.signers:
        notes.append(
            f"signatures checked against the key of the first record ({scan.signers[0]}), "
            "which no certificate vouched for: pass the node's certificate to authenticate it"
        )
    mine = [c for c in checkpoints if node is None or c.node == node]
    checked = 0
    if scan.finding is None:
        scan.finding, checked = _against_checkpoints(scan.hashes, mine), len(mine)
    last = scan.records[-1] if scan.records else None
    return VerifyResult(
        path=path,
        records=len(lines),
        head=None if last is None else Checkpoint.of(last),
        node=node,
        jurisdiction=jurisdiction,
        signers=tuple(scan.signers),
        authenticated=bool(trusted),
        checkpoints_checked=checked,
        finding=scan.finding,
        notes=tuple(notes),
        hashes=tuple(scan.hashes),
    )


def recheck_with_checkpoints(
    result: VerifyResult, checkpoints: Iterable[Checkpoint]
) -> VerifyResult:
    """``result`` (of ``verify_ledger`` without checkpoints) checked against
    ``checkpoints`` held elsewhere (its node's only): what ``verify_ledger(...,
    checkpoints=...)`` finds on the same bytes, without reading and verifying every
    signature again."""
    mine = [c for c in checkpoints if result.node is None or c.node == result.node]
    if not result.ok or not mine:
        return result
    return dataclasses.replace(
        result, finding=_against_checkpoints(result.hashes, mine), checkpoints_checked=len(mine)
    )


def _certificate_key(cert: x509.Certificate) -> TrustedKey:
    identity = identity_from_certificate(cert)
    key = cert.public_key()
    return TrustedKey(
        der=_public_key(key).der,
        label=f"certificate {identity.name} ({identity.jurisdiction}, key {fingerprint(key)})",
        node=identity.name,
        jurisdiction=identity.jurisdiction,
        certificate=True,
    )


def _public_key(key: PublicKeyTypes) -> TrustedKey:
    if not isinstance(key, VerifyingKey):
        raise AuditError(f"cannot verify audit records with a {type(key).__name__}")
    return TrustedKey(der=spki_der(key), label=f"the given public key ({fingerprint(key)})")


def _against_checkpoints(
    hashes: Sequence[str], checkpoints: Sequence[Checkpoint]
) -> Finding | None:
    """A record (of these ``hashes``, one per record that passed) that differs from a
    checkpoint (lowest seq first), else a cut-off tail."""
    n = len(hashes)
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        if cp.seq < n and hashes[cp.seq] != cp.sha256:
            return Finding(
                Reason.edited,
                cp.seq + 1,
                cp.seq,
                f"seq {cp.seq} hashes to {hashes[cp.seq]}, but a checkpoint held "
                f"elsewhere names {cp.sha256}: the ledger was rewritten at or before seq {cp.seq}",
            )
    beyond = max((cp for cp in checkpoints if cp.seq >= n), key=lambda c: c.seq, default=None)
    if beyond is None:
        return None
    ends = "the ledger is empty" if n == 0 else f"the ledger ends at seq {n - 1}"
    return Finding(
        Reason.truncated,
        n + 1,
        n,
        f"{ends}, but a checkpoint held elsewhere names seq {beyond.seq} "
        f"(sha256 {beyond.sha256}): at least {beyond.seq - n + 1} record(s) were cut off",
    )
