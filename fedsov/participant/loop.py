"""The participant's loop: dial out, join, hold the task subscription, hand each task
to a handler, and reconnect with exponential backoff and jitter until the upstream
says the federation finished. Refusals that retrying cannot fix end the loop at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from fedsov.audit.trail import AuditTrail
from fedsov.config import Backoff
from fedsov.exceptions import FedsovError
from fedsov.messages import Finished, TrainTask
from fedsov.participant.guard import JoinCheck
from fedsov.participant.upstream import FATAL, Upstream
from fedsov.transport.client import FederationClient

__all__ = ["TaskHandler", "serve_upstream"]

log = logging.getLogger("fedsov.participant")

TaskHandler = Callable[[Upstream, TrainTask], Awaitable[None]]


async def serve_upstream(
    connect: Callable[[], FederationClient],
    *,
    address: str,
    device: str,
    backoff: Backoff,
    handle: TaskHandler,
    audit: AuditTrail,
    on_join: JoinCheck | None = None,
) -> Finished:
    """Serve the upstream's tasks until it finishes; returns its Finished message.

    ``handle`` gets each task with the connection's ``Upstream``, which records what
    this node receives from and sends to it in ``audit``. ``on_join`` sees each join's
    answer before any task is taken (``may_join``)."""
    failures = 0
    while True:
        try:
            async with connect() as client:
                joined = await client.join(device=device)
                upstream = Upstream(client, audit)
                if on_join is not None:
                    on_join(upstream, joined)
                log.info(
                    "joined federation %s as %s (%s)",
                    joined.federation,
                    joined.node_name,
                    joined.jurisdiction,
                )
                failures = 0
                async for event in client.tasks():
                    if isinstance(event, TrainTask):
                        await handle(upstream, event)
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
