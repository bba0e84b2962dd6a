"""Secure rounds on the serving side: the stages of SecAgg+ (fedsov.secagg) around a round.

``SecureStages`` answers each site's calls (keys, shares, survivors, reveals), each
once its stage closes: when every site still in the round has sent its part, or at
the stage's timeout. A site that misses a key stage is out of the round (its task
turns late); too few sites at any stage fail the round with a named reason, and a
failed round exports nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from fedsov.exceptions import ProtocolError, SecureAggregation
from fedsov.messages import SecAggReply, SecAggRequest, SecAggStage
from fedsov.secagg import RegionRound, Unmasking

__all__ = ["SecureStages"]

log = logging.getLogger("fedsov.node")

_KEY_STAGES = (SecAggStage.ADVERTISE, SecAggStage.SHARE)


class SecureStages:
    def __init__(
        self,
        protocol: RegionRound,
        *,
        active: Callable[[], set[str]],
        drop: Callable[[str, str], None],
        on_failure: Callable[[], None],
    ) -> None:
        """``active``: the sites whose tasks are still open; ``drop(site, why)`` ends a
        site's task; ``on_failure``: the round cannot complete (stop waiting for it)."""
        self.protocol = protocol
        self.timeout = protocol.params.stage_timeout_s
        self._active = active
        self._drop = drop
        self._on_failure = on_failure
        self._closed = {stage: asyncio.Event() for stage in SecAggStage}
        self.failure: SecureAggregation | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reveals_by = 0.0

    def start(self) -> None:
        """Open the key stage (its timeout starts now)."""
        self._arm(SecAggStage.ADVERTISE)

    def _arm(self, stage: SecAggStage) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.timeout, self._close, stage)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for event in self._closed.values():
            event.set()  # whoever waits is answered (with the failure, if any)

    async def step(self, site: str, request: SecAggRequest) -> SecAggReply:
        p, stage = self.protocol, request.stage
        if request.round != p.round:
            raise ProtocolError(f"secure aggregation: round {request.round} is not open")
        if stage is SecAggStage.ADVERTISE:
            if request.keys is None:
                raise ProtocolError("secure aggregation: an advertise step carries keys")
            p.advertise(site, request.keys)
            self._close_if_complete(stage, set(p.keys))
            await self._wait(stage)
            return SecAggReply(stage, neighbours=p.neighbours(site))
        if stage is SecAggStage.SHARE:
            p.submit_shares(site, request.shares)
            self._close_if_complete(stage, p.sharers)
            await self._wait(stage)
            return SecAggReply(stage, shares=p.shares_for(site))
        if stage is SecAggStage.UNMASK:
            await self._wait(stage)
            return SecAggReply(stage, survivors=p.survivors or (), dropped=p.dropped)
        p.submit_reveals(site, request.reveals)
        if set(p.survivors or ()) <= p.revealed:
            self._closed[SecAggStage.REVEAL].set()
        return SecAggReply(stage)

    async def _wait(self, stage: SecAggStage) -> None:
        await self._closed[stage].wait()
        if self.failure is not None:
            raise self.failure

    def _close_if_complete(self, stage: SecAggStage, done: set[str]) -> None:
        if self._active() <= done:
            self._close(stage)

    def _close(self, stage: SecAggStage) -> None:
        """Close a key stage: the sites that missed it are out; too few fail the round."""
        if self._closed[stage].is_set():
            return
        if self._timer is not None:
            self._timer.cancel()
        p = self.protocol
        try:
            if stage is SecAggStage.ADVERTISE:
                missing, why = set(p.sites) - set(p.keys), "sent no keys"
                p.close_advertising()
            else:
                missing, why = set(p.sites) - p.sharers, "sent no shares"
                p.close_sharing()
        except SecureAggregation as exc:
            self.fail(exc)
            return
        for site in sorted(missing & self._active()):
            self._drop(site, f"secure aggregation: {why} within {self.timeout:g} s")
        self._closed[stage].set()
        if stage is SecAggStage.ADVERTISE:
            self._arm(SecAggStage.SHARE)
            self._close_if_complete(SecAggStage.SHARE, p.sharers)
        log.info("round %d: secure aggregation: %s stage closed", p.round, stage)

    def fail(self, exc: SecureAggregation) -> None:
        if self.failure is None:
            self.failure = exc
            log.error("round %d: %s", self.protocol.round, exc)
        self.cancel()
        self._on_failure()

    async def unmask(self, uploaded: Iterable[str], deadline: float) -> Unmasking:
        """After the uploads: name the survivors, wait (until ``deadline``, at most the
        stage timeout) for their shares, and rebuild what the unmasking needs."""
        if self.failure is not None:
            raise self.failure
        p = self.protocol
        try:
            p.name_survivors(uploaded)
        except SecureAggregation as exc:
            self.fail(exc)
            raise
        self._closed[SecAggStage.UNMASK].set()
        wait = max(0.0, min(self.timeout, deadline - time.time()))
        try:
            async with asyncio.timeout(wait):
                await self._closed[SecAggStage.REVEAL].wait()
        except TimeoutError:
            pass
        p.stage = "unmasking"  # late reveals are refused from now on: the thread reads alone
        try:
            return await asyncio.to_thread(p.unmasking)  # Shamir rebuilds, key agreements
        except SecureAggregation as exc:
            self.fail(exc)
            raise
