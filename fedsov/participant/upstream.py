"""One connection to a node's upstream: each outward act (download, decline, send)
written once, and recorded once in the node's audit trail."""

from __future__ import annotations

import logging
from dataclasses import replace

import grpc

from fedsov.audit.trail import AuditTrail
from fedsov.messages import TrainTask, UpdateHeader
from fedsov.transport.client import FederationClient

__all__ = ["FATAL", "Upstream"]

log = logging.getLogger("fedsov.participant")

# Certificate refused, not allowed, or started with another plan: retrying cannot help.
FATAL = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


class Upstream:
    """The upstream as a participant (site or regional aggregator) sees it."""

    def __init__(self, client: FederationClient, audit: AuditTrail) -> None:
        self.client = client
        self.audit = audit

    @property
    def name(self) -> str:
        return self.client.upstream_name

    @property
    def jurisdiction(self) -> str | None:
        return self.client.upstream_jurisdiction

    async def download(self, task: TrainTask, *, buffer: bytearray | None = None) -> bytearray:
        """The task's model, checked against its hash; ``buffer`` resumes a cut-off one."""
        payload = await self.client.download(task.model_sha256, size=task.model_size, buffer=buffer)
        self.audit.model_received(
            round=task.round,
            upstream=self.name,
            upstream_jurisdiction=self.jurisdiction,
            sha256=task.model_sha256,
        )
        return payload

    async def decline(self, task: TrainTask, *, code: str, reason: str) -> None:
        """Refuse ``task``: the upstream records code and reason in its round report; so
        does this node's audit trail."""
        await self.client.decline(task_id=task.task_id, round=task.round, code=code, reason=reason)
        self.audit.declined(
            round=task.round,
            peer=self.name,
            peer_jurisdiction=self.jurisdiction,
            code=code,
            reason=reason,
        )

    async def send(self, header: UpdateHeader, payload: bytes | bytearray) -> bool:
        """Upload, with this node's ledger head and its signed statement of contributors
        (``fedsov.audit.statement``); a refusal of this one update (late,
        invalid) is logged and returns False.

        Refusals of the node itself and a lost connection propagate, so the upstream
        loop stops or reconnects.
        """
        header = replace(header, audit_head=self.audit.head())
        header = replace(header, contributors_signature=self.audit.sign_contributors(header))
        try:
            await self.client.upload(header, payload)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in FATAL or exc.code() is grpc.StatusCode.UNAVAILABLE:
                raise
            if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                log.warning("round %d: update not counted, late: %s", header.round, exc.details())
            else:
                log.error(
                    "round %d: update refused: %s: %s",
                    header.round,
                    exc.code().name,
                    exc.details(),
                )
            return False
        self.audit.update_sent(
            upstream=self.name, upstream_jurisdiction=self.jurisdiction, header=header
        )
        return True
