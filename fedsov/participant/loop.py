"""The participant's loop: dial out, join, hold the task subscription, hand each task
to a handler, and reconnect with exponential backoff and jitter until the upstream
says the federation finished. Refusals that retrying cannot fix end the loop at once:
an upstream that cannot prove it is the expected one, a certificate or host name that
TLS refuses, a refusal of this node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from fedsov.audit.trail import AuditTrail
from fedsov.config import Backoff
from fedsov.exceptions import AccessDenied, FedsovError, PKIError
from fedsov.messages import Finished, TrainTask
from fedsov.participant.expect import ExpectedUpstream
from fedsov.participant.guard import JoinCheck
from fedsov.participant.upstream import FATAL, Upstream
from fedsov.pki.revoke import RevocationList
from fedsov.proto.v1.federation_pb2 import JoinResponse
from fedsov.transport.client import FederationClient
from fedsov.transport.diagnose import stop_reason

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
    expect: ExpectedUpstream | None = None,
    revocation: RevocationList | None = None,
) -> Finished:
    """Serve the upstream's tasks until it finishes; returns its Finished message.

    ``handle`` gets each task with the connection's ``Upstream``, which records what
    this node receives from and sends to it in ``audit``. Before any task is taken,
    under TLS the identity the upstream proved must be ``expect``'s (default: any
    coordinator or aggregator) and its certificate not revoked (``revocation``), then
    ``on_join`` sees the join's answer (``may_join``)."""
    failures = 0
    while True:
        client = connect()
        try:
            async with client:
                expected = expect or ExpectedUpstream()
                joined = await _join(client, device, audit, expected, revocation)
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
            why = await stop_reason(
                exc, address=address, server_name=client.server_name, tls=client.tls
            )
            if why is not None:
                audit.refused(
                    peer=client.upstream_name,
                    peer_jurisdiction=None,
                    decision="upstream-tls",
                    reason=why,
                )
                raise PKIError(why) from exc
            log.warning("upstream unreachable (%s: %s)", exc.code().name, exc.details())
        failures += 1
        if backoff.max_attempts and failures > backoff.max_attempts:
            raise FedsovError(
                f"gave up after {backoff.max_attempts} failed attempts to reach {address}"
            )
        delay = backoff.delay(failures)
        log.info("reconnecting in %.1f s (attempt %d)", delay, failures)
        await asyncio.sleep(delay)


async def _join(
    client: FederationClient,
    device: str,
    audit: AuditTrail,
    expect: ExpectedUpstream,
    revocation: RevocationList | None,
) -> JoinResponse:
    """Join, and refuse (recorded in ``audit``) an upstream that cannot prove it is the
    expected one, or whose certificate the CA revoked."""
    try:
        joined = await client.join(device=device)
        seen = client.upstream
        if seen is not None:
            expect.check(seen)
            if revocation is not None and seen.certificate_der is not None:
                revocation.check(seen.certificate_der)
    except (PKIError, AccessDenied) as exc:
        seen = client.upstream
        audit.refused(
            peer=seen.name if seen else client.upstream_name,
            peer_jurisdiction=seen.jurisdiction if seen else None,
            decision="upstream-identity",
            reason=str(exc),
        )
        raise type(exc)(f"this node refuses upstream {client.address}: {exc}") from exc
    return joined
