"""A node's audit ledger: append-only, hash-chained, signed, checkpointed.

Each ``append`` writes one record with a single fsynced write, so a record is on
disk when ``append`` returns; a process killed mid-write leaves at most a torn last
line, cut off when the ledger is next opened, and the chain goes on from the record
before it. Every ``checkpoint_every`` records, and on ``close``, the ledger appends a
signed ``checkpoint`` record naming the head (seq and SHA-256 of the record before
it) and hands a ``Checkpoint`` to ``on_checkpoint`` so that someone else can hold it.

Memory does not grow with the ledger: it keeps the last record and two counters;
``records`` reads the file when asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from fedsov.audit._chain import parse_line, scan_lines
from fedsov.audit._lines import append_line, read_lines
from fedsov.audit.checkpoint import Checkpoint
from fedsov.audit.record import (
    FORMAT_VERSION,
    GENESIS_PREV,
    AuditEvent,
    AuditRecord,
    canonical_json,
    utc_now,
)
from fedsov.audit.signing import Signer, load_certificates
from fedsov.exceptions import AuditError, LedgerTampered, PKIError
from fedsov.pki._keys import public_keys_equal
from fedsov.pki.identity import identity_from_certificate, validate_jurisdiction, validate_name

__all__ = ["DEFAULT_CHECKPOINT_EVERY", "AuditLedger", "read_ledger"]

DEFAULT_CHECKPOINT_EVERY = 64

CheckpointHook = Callable[[Checkpoint], None]


class AuditLedger:
    """Append signed records to one node's ledger; open with ``AuditLedger.open``."""

    def __init__(
        self,
        path: Path,
        *,
        signer: Signer,
        node: str,
        jurisdiction: str,
        plan_sha256: str | None,
        checkpoint_every: int,
        on_checkpoint: CheckpointHook | None,
        records: Sequence[AuditRecord],
    ) -> None:
        """``records``: those already in the file (only the last is kept)."""
        self.path = path
        self.signer = signer
        self.node = node
        self.jurisdiction = jurisdiction
        self.plan_sha256 = plan_sha256
        self.checkpoint_every = checkpoint_every
        self.on_checkpoint = on_checkpoint
        self._last: AuditRecord | None = records[-1] if records else None
        self._lock = threading.Lock()
        self._closed = False
        self._since_checkpoint = 0
        for record in reversed(records):
            if record.event == AuditEvent.checkpoint:
                break
            self._since_checkpoint += 1

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        signer: Signer,
        node: str,
        jurisdiction: str,
        plan_sha256: str | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        on_checkpoint: CheckpointHook | None = None,
    ) -> AuditLedger:
        """Open (or create) the ledger at ``path`` and check every record already in it.

        A torn last line is cut off. A record that fails the check raises LedgerTampered
        naming its line; a ledger of another node or jurisdiction raises AuditError.
        The signer's key may differ from earlier records' (a renewed certificate).
        """
        try:
            validate_name(node)
            validate_jurisdiction(jurisdiction)
        except PKIError as exc:
            raise AuditError(f"audit ledger {path}: {exc}") from None
        if checkpoint_every < 1:
            raise AuditError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        records: list[AuditRecord] = []
        if path.exists():
            lines, _ = read_lines(path, what="audit ledger", repair=True)
            scan = scan_lines(lines, trusted=None, key_changes=True)
            if scan.finding is not None:
                raise LedgerTampered(
                    f"audit ledger {path}, {scan.finding}; see `fedsov audit verify {path}`"
                )
            records = scan.records
        if records and (records[0].node, records[0].jurisdiction) != (node, jurisdiction):
            raise AuditError(
                f"audit ledger {path} belongs to {records[0].node} ({records[0].jurisdiction}),"
                f" not {node} ({jurisdiction})"
            )
        return cls(
            path,
            signer=signer,
            node=node,
            jurisdiction=jurisdiction,
            plan_sha256=plan_sha256,
            checkpoint_every=checkpoint_every,
            on_checkpoint=on_checkpoint,
            records=records,
        )

    @classmethod
    def open_with_certificate(
        cls,
        path: Path,
        *,
        cert: Path,
        key: Path,
        plan_sha256: str | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        on_checkpoint: CheckpointHook | None = None,
    ) -> AuditLedger:
        """``open`` as the node a certificate names, signing with its private key."""
        certificate = load_certificates(cert)[0]
        identity = identity_from_certificate(certificate)
        signer = Signer.load(key)
        if not public_keys_equal(signer.public_key, certificate.public_key()):
            raise PKIError(f"private key {key} does not match certificate {cert}")
        return cls.open(
            path,
            signer=signer,
            node=identity.name,
            jurisdiction=identity.jurisdiction,
            plan_sha256=plan_sha256,
            checkpoint_every=checkpoint_every,
            on_checkpoint=on_checkpoint,
        )

    @property
    def records(self) -> tuple[AuditRecord, ...]:
        """Every record, in order, read from the file (not kept in memory)."""
        with self._lock:
            if self._last is None:
                return ()
            return tuple(read_ledger(self.path))

    @property
    def last(self) -> AuditRecord | None:
        """The last record; None while the ledger is empty."""
        return self._last

    @property
    def head(self) -> Checkpoint | None:
        """A checkpoint naming the last record; None while the ledger is empty."""
        return Checkpoint.of(self._last) if self._last else None

    def __len__(self) -> int:
        return 0 if self._last is None else self._last.seq + 1

    def append(
        self,
        *,
        event: AuditEvent | str,
        round: int | None = None,
        peer: str | None = None,
        peer_jurisdiction: str | None = None,
        content_sha256: str | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        decision: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Sign, chain and append one record; returns once it is on disk.

        Record hashes of what was sent or received (``content_sha256``), never contents.
        May append a checkpoint after it (then ``on_checkpoint`` is called).
        """
        if event == AuditEvent.checkpoint:
            raise AuditError("checkpoint records are the ledger's own: call checkpoint()")
        fields = {
            "event": str(event),
            "round": round,
            "peer": peer,
            "peer_jurisdiction": peer_jurisdiction,
            "content_sha256": content_sha256,
            "epsilon": None if epsilon is None else float(epsilon),
            "delta": None if delta is None else float(delta),
            "decision": decision,
            "detail": dict(detail or {}),
        }
        checkpoint = None
        with self._lock:
            record = self._write(fields)
            self._since_checkpoint += 1
            if self._since_checkpoint >= self.checkpoint_every:
                checkpoint = self._write_checkpoint()
        if checkpoint is not None and self.on_checkpoint is not None:
            self.on_checkpoint(checkpoint)
        return record

    def checkpoint(self) -> Checkpoint:
        """Append a checkpoint record now (unless the last record is one) and return it."""
        with self._lock:
            if self._last is None:
                raise AuditError(f"audit ledger {self.path} is empty: nothing to checkpoint")
            if self._last.event == AuditEvent.checkpoint:
                return Checkpoint.of(self._last)
            checkpoint = self._write_checkpoint()
        if self.on_checkpoint is not None:
            self.on_checkpoint(checkpoint)
        return checkpoint

    def close(self) -> None:
        """Checkpoint a non-empty ledger and refuse further appends. Idempotent."""
        if self._closed:
            return
        if self._last is not None:
            self.checkpoint()
        self._closed = True

    def __enter__(self) -> AuditLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write_checkpoint(self) -> Checkpoint:
        last = self._last
        assert last is not None  # checkpoint() checked
        detail = {"head_seq": last.seq, "head_sha256": last.sha256}
        record = self._write({"event": str(AuditEvent.checkpoint), "detail": detail})
        self._since_checkpoint = 0
        return Checkpoint.of(record)

    def _write(self, fields: Mapping[str, Any]) -> AuditRecord:
        if self._closed:
            raise AuditError(f"audit ledger {self.path} is closed")
        last = self._last
        unsigned: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "seq": 0 if last is None else last.seq + 1,
            "time": utc_now(),
            "node": self.node,
            "jurisdiction": self.jurisdiction,
            "round": None,
            "peer": None,
            "peer_jurisdiction": None,
            "plan_sha256": self.plan_sha256,
            "content_sha256": None,
            "epsilon": None,
            "delta": None,
            "decision": None,
            "prev": GENESIS_PREV if last is None else last.sha256,
            "key": self.signer.key_field,
            **fields,
        }
        try:
            AuditRecord.from_dict({**unsigned, "sig": "unsigned"})
            signed_bytes = canonical_json(unsigned)
        except (ValueError, TypeError) as exc:
            raise AuditError(f"audit record for {self.path}: {exc}") from None
        record = AuditRecord(**unsigned, sig=self.signer.sign(signed_bytes))
        append_line(self.path, record.line(), what="audit ledger")
        self._last = record
        return record


def read_ledger(path: Path) -> list[AuditRecord]:
    """Every record of a ledger, parsed but not verified; AuditError names a bad line."""
    lines, _ = read_lines(path, what="audit ledger")
    records = []
    for number, line in enumerate(lines, start=1):
        item = parse_line(line)
        if isinstance(item, str):
            raise AuditError(f"audit ledger {path}, line {number}: {item}")
        records.append(item)
    return records
