"""The upstream side of every participant (site or regional aggregator).

Dials out, joins, holds the task subscription, hands each task to a handler, and
reconnects with exponential backoff and jitter until the upstream says the
federation finished. Refusals that retrying cannot fix end the loop at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from fedsov.config import Backoff
from fedsov.exceptions import FedsovError, PolicyViolation
from fedsov.messages import Finished, TrainTask, UpdateHeader
from fedsov.transport.client import FederationClient

if TYPE_CHECKING:  # the plan reads participant settings: imported where used
    from fedsov.audit.trail import AuditTrail
    from fedsov.policy.plan import Plan

__all__ = ["FATAL", "Backoff", "decline_task", "may_send", "send_update", "serve_upstream"]

log = logging.getLogger("fedsov.participant")

# Certificate refused, not allowed, or started with another plan: retrying cannot help.
FATAL = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)

TaskHandler = Callable[[FederationClient, TrainTask], Awaitable[None]]


async def serve_upstream(
    connect: Callable[[], FederationClient],
    *,
    address: str,
    device: str,
    backoff: Backoff,
    handle: TaskHandler,
) -> Finished:
    """Serve the upstream's tasks until it finishes; returns its Finished message."""
    failures = 0
    while True:
        try:
            async with connect() as client:
                joined = await client.join(device=device)
                log.info(
                    "joined federation %s as %s (%s)",
                    joined.federation,
                    joined.node_name,
                    joined.jurisdiction,
                )
                failures = 0
                async for event in client.tasks():
                    if isinstance(event, TrainTask):
                        await handle(client, event)
                    elif isinstance(event, Finished):
                        log.info("federation finished: %s", event.reason)
                        return event
            log.warning("task stream closed by the upstream; reconnecting")
        except grpc.aio.AioRpcError as exc:
            if exc.code() in FATAL:
                raise FedsovError(
                    f"upstream {address} refused this node: {exc.code().name}: {exc.details()}"
                ) from exc
            log.warning("upstream unreachable (%s: %s)", exc.code().name, exc.details())
        failures += 1
        if backoff.max_attempts and failures > backoff.max_attempts:
            raise FedsovError(
                f"gave up after {backoff.max_attempts} failed attempts to reach {address}"
            )
        delay = backoff.delay(failures)
        log.info("reconnecting in %.1f s (attempt %d)", delay, failures)
        await asyncio.sleep(delay)


async def send_update(
    client: FederationClient, header: UpdateHeader, payload: bytes | bytearray
) -> bool:
    """Upload; a refusal of this one update (late, invalid) is logged, not fatal.

    Refusals of the node itself and a lost connection propagate, so the upstream
    loop stops or reconnects.
    """
    try:
        await client.upload(header, payload)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in FATAL or exc.code() is grpc.StatusCode.UNAVAILABLE:
            raise
        if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
            log.warning("round %d: update not counted, late: %s", header.round, exc.details())
        else:
            log.error(
                "round %d: update refused: %s: %s", header.round, exc.code().name, exc.details()
            )
        return False
    return True


async def decline_task(
    client: FederationClient, task: TrainTask, *, code: str, reason: str, audit: AuditTrail | None
) -> None:
    """Refuse ``task``: the upstream records code and reason in its round report; so does
    this node's audit trail."""
    await client.decline(task_id=task.task_id, round=task.round, code=code, reason=reason)
    if audit is not None:
        audit.declined(
            round=task.round,
            peer=client.upstream_name,
            peer_jurisdiction=client.upstream_jurisdiction,
            code=code,
            reason=reason,
        )


def may_send(plan: Plan, node: str, audit: AuditTrail | None) -> None:
    """Refuse, before any byte leaves, an upstream the plan's residency forbids.

    The refusal is recorded in the node's audit trail, then raised (PolicyViolation).
    """
    from fedsov.policy.runtime import require_may_send

    try:
        require_may_send(plan, node)
    except PolicyViolation as exc:
        upstream = plan.node(node).upstream
        if audit is not None and upstream:
            audit.refused(
                peer=upstream,
                peer_jurisdiction={n.name: n.jurisdiction for n in plan.nodes}.get(upstream),
                decision="residency",
                reason=str(exc),
            )
        raise
