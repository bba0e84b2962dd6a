"""The record-by-record check shared by ``verify_ledger`` and ``AuditLedger.open``.

Each line, in order, must: parse (else ``malformed``); carry a signature that verifies
under the key it names (else ``edited``), a key the verifier trusts (else ``forged
signature``); be the record's canonical bytes (else ``edited``); name the signer's node
(else ``wrong identity``); hold the next seq (else ``reordered`` or ``removed``); and
chain to the line before (else ``edited``). The first failure is the finding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from fedsov.audit.findings import Finding, Reason
from fedsov.audit.record import GENESIS_PREV, AuditEvent, AuditRecord
from fedsov.audit.signing import decode_public_key, fingerprint, verify_signature

__all__ = ["Scan", "TrustedKey", "parse_line", "scan_lines", "spki_der"]


@dataclass(frozen=True)
class TrustedKey:
    """A key the verifier accepts, how to name it, and the identity it vouches for."""

    der: bytes
    label: str
    node: str | None = None
    jurisdiction: str | None = None
    certificate: bool = False


@dataclass
class Scan:
    """The records that passed, in order, and the first finding (None: all passed)."""

    records: list[AuditRecord] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    signers: list[str] = field(default_factory=list)
    finding: Finding | None = None


def parse_line(line: bytes) -> AuditRecord | str:
    """The record on ``line``, or what is wrong with it."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        return f"not JSON ({exc})"
    except RecursionError:
        return "not JSON (nested too deeply to parse)"
    try:
        return AuditRecord.from_dict(obj)
    except ValueError as exc:
        return str(exc)


def scan_lines(
    lines: Sequence[bytes], *, trusted: Sequence[TrustedKey] | None, key_changes: bool = False
) -> Scan:
    """Check ``lines`` in order and stop at the first bad one.

    ``trusted`` None trusts the key of the first record (trust on first use); with
    ``key_changes`` any key may sign, as long as each record verifies under its own key.
    """
    return _Scanner(lines, trusted, key_changes).run()


def spki_der(key: PublicKeyTypes) -> bytes:
    """The key's DER SubjectPublicKeyInfo: how keys are compared."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class _Scanner:
    def __init__(
        self, lines: Sequence[bytes], trusted: Sequence[TrustedKey] | None, key_changes: bool
    ) -> None:
        self.lines = lines
        self.parsed = [parse_line(line) for line in lines]
        self.seqs = [item.seq if isinstance(item, AuditRecord) else None for item in self.parsed]
        self.trusted = None if trusted is None else list(trusted)
        self.key_changes = key_changes
        self.signer: TrustedKey | None = None
        self.first_use = False
        self.scan = Scan()

    def run(self) -> Scan:
        prev = GENESIS_PREV
        for i, item in enumerate(self.parsed):
            if isinstance(item, str):
                self.scan.finding = Finding(Reason.malformed, i + 1, i, item)
                break
            finding = (
                self._authentic(i, item)
                or self._canonical(i, item)
                or self._identity(i, item)
                or self._sequence(i, item)
                or self._link(i, item, prev)
                or self._checkpoint(i, item, prev)
            )
            if finding is not None:
                self.scan.finding = finding
                break
            prev = hashlib.sha256(self.lines[i]).hexdigest()
            self.scan.records.append(item)
            self.scan.hashes.append(prev)
        return self.scan

    @staticmethod
    def _bad(reason: Reason, i: int, message: str) -> Finding:
        """At line i + 1, where seq i belongs (the record's own seq may be what changed)."""
        return Finding(reason, i + 1, i, message)

    def _authentic(self, i: int, record: AuditRecord) -> Finding | None:
        try:
            key = decode_public_key(record.key)
        except ValueError as exc:
            return self._bad(Reason.edited, i, f"its key field is unusable: {exc}")
        if not verify_signature(key, record.sig, record.signed_bytes()):
            return self._bad(
                Reason.edited,
                i,
                "its signature does not match its content: it was changed after it was signed",
            )
        der, fp = spki_der(key), fingerprint(key)
        if self.trusted is None and not self.key_changes:
            label = f"the key that signed the ledger's first record ({fp})"
            self.trusted = [TrustedKey(der, label, record.node, record.jurisdiction)]
            self.first_use = True
        if self.trusted is None:
            self.signer = None
        else:
            self.signer = next((t for t in self.trusted if t.der == der), None)
            if self.signer is None:
                return self._bad(Reason.forged, i, self._forged(record, fp))
        if fp not in self.scan.signers:
            self.scan.signers.append(fp)
        return None

    def _forged(self, record: AuditRecord, fp: str) -> str:
        assert self.trusted is not None
        allowed = " or ".join(t.label for t in self.trusted)
        message = f"it is validly signed, but by key {fp}, not by {allowed}"
        if self.first_use:
            message += "; if the node's key was renewed, pass its certificates"
        names = sorted({t.node for t in self.trusted if t.certificate and t.node})
        if names and record.node not in names:
            message += (
                f"; the certificate names {', '.join(names)}, "
                f"but the ledger's node is {record.node}"
            )
        return message

    def _canonical(self, i: int, record: AuditRecord) -> Finding | None:
        if self.lines[i] == record.line():
            return None
        return self._bad(
            Reason.edited,
            i,
            "its line is not the canonical form of the record: bytes were changed",
        )

    def _identity(self, i: int, record: AuditRecord) -> Finding | None:
        if self.signer is not None and self.signer.certificate and self.signer.node:
            node, jurisdiction = self.signer.node, self.signer.jurisdiction
            source = "its signer's certificate"
        elif self.scan.records:
            first = self.scan.records[0]
            node, jurisdiction, source = first.node, first.jurisdiction, "the first record"
        else:
            return None
        if record.node == node and jurisdiction in (None, record.jurisdiction):
            return None
        named = node if jurisdiction is None else f"{node} ({jurisdiction})"
        return self._bad(
            Reason.identity,
            i,
            f"it names node {record.node} ({record.jurisdiction}), but {source} is {named}",
        )

    def _sequence(self, i: int, record: AuditRecord) -> Finding | None:
        if record.seq == i:
            return None
        where = f"line {i + 1} holds seq {record.seq} where seq {i} belongs"
        later = next((j for j in range(i + 1, len(self.seqs)) if self.seqs[j] == i), None)
        if record.seq < i and self.lines[i] == self.lines[record.seq]:
            message = f"{where}: a copy of line {record.seq + 1}"
        elif later is not None:
            message = f"{where}; seq {i} is at line {later + 1}"
        elif record.seq < i:
            message = f"{where}: seq goes back"
        else:
            last = record.seq - 1
            gone = f"seq {i} is" if last == i else f"seq {i}..{last} ({last - i + 1} records) are"
            message = f"{where}: {gone} missing"
            return Finding(Reason.removed, i + 1, i, message)
        return Finding(Reason.reordered, i + 1, i, message)

    def _link(self, i: int, record: AuditRecord, prev: str) -> Finding | None:
        if record.prev == prev:
            return None
        if i == 0:
            return self._bad(Reason.edited, i, f"the first record's prev is not {prev}")
        return Finding(
            Reason.edited,
            i,
            i - 1,
            f"seq {i - 1} (sha256 {prev}) is not the record that seq {i} (line {i + 1}) "
            f"was chained to (prev {record.prev}): one of them was replaced by another "
            "record signed with the same key",
        )

    def _checkpoint(self, i: int, record: AuditRecord, prev: str) -> Finding | None:
        if record.event != AuditEvent.checkpoint:
            return None
        detail = dict(record.detail)
        if i == 0 or set(detail) != {"head_seq", "head_sha256"}:
            return self._bad(
                Reason.malformed,
                i,
                "a checkpoint needs a record before it, and detail {head_seq, head_sha256}",
            )
        if detail == {"head_seq": i - 1, "head_sha256": prev}:
            return None
        return self._bad(
            Reason.edited,
            i,
            f"the checkpoint names seq {detail['head_seq']} sha256 {detail['head_sha256']}, "
            f"but seq {i - 1} hashes to {prev}: the records before it were rewritten",
        )
