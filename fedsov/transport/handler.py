"""What the gRPC servicer hands each call to: a node's logic, which knows nothing of gRPC.

``fedsov.node.engine.Engine`` is the one implementation; tests may pass a fake. The
servicer checks identity (certificate, plan header), bounds streams and maps errors;
the handler admits, checks and records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from fedsov.messages import (
    NodeStatus,
    SecAggReply,
    SecAggRequest,
    TaskEvent,
    UpdateHeader,
    UploadReceipt,
)
from fedsov.pki.identity import NodeIdentity

__all__ = ["FederationHandler", "OperatorHandler"]


class OperatorHandler(Protocol):
    """What an operator may ask of a node: its status, and a graceful stop."""

    def status(self) -> NodeStatus: ...

    def request_stop(self, operator: NodeIdentity, reason: str) -> str:
        """Stop after the round in progress; returns what will happen. Raises
        FedsovError (e.g. ProtocolError) where this node cannot be stopped so."""
        ...


class FederationHandler(Protocol):
    @property
    def federation(self) -> str: ...

    @property
    def current_round(self) -> int:
        """The open round's number; 0 when none is open."""
        ...

    def admit(self, identity: NodeIdentity) -> None:
        """Raise AccessDenied / PolicyViolation unless ``identity`` may take part."""

    def refused(self, identity: NodeIdentity, decision: str, reason: str) -> None:
        """Record that ``identity`` was refused (admission, plan mismatch)."""

    async def subscribe(self, identity: NodeIdentity) -> AsyncIterator[TaskEvent]: ...

    def model_payload(self, sha256: str) -> bytes | bytearray: ...

    async def model_sent(self, identity: NodeIdentity, sha256: str) -> None: ...

    def check_upload(self, identity: NodeIdentity, header: UpdateHeader) -> float:
        """Raise unless ``header`` opens an upload ``identity`` may send now (an open
        round, its own pending task, a sane header); return the Unix time it must be
        in by. Called before the upload gets any resource beyond its header."""
        ...

    async def receive_update(
        self,
        identity: NodeIdentity,
        header: UpdateHeader,
        chunks: AsyncIterator[bytes | memoryview],
    ) -> UploadReceipt: ...

    def decline(
        self, identity: NodeIdentity, *, task_id: str, round: int, code: str, reason: str
    ) -> None: ...

    async def secure_step(self, identity: NodeIdentity, request: SecAggRequest) -> SecAggReply:
        """One step of a secure round for ``identity``'s task (fedsov.secagg); answered
        once the stage it waits for closes."""
        ...
