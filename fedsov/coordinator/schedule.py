"""The coordinator's schedule: rounds 1..N over the node's round runner, retried.

A regional aggregator runs the same ``Engine`` one round per upstream task; only the
coordinator decides by itself which round runs next, how often a failed one is
retried, what the sites are asked to train, and when the federation stops early: a
``[guardrails]`` rule that trips (fedsov.coordinator.guardrails) or an operator's stop
(``request_stop``). Either ends it cleanly: committed rounds stay committed, the
ledger records why, and every participant is told.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fedsov.config import GuardrailSettings
from fedsov.coordinator.guardrails import OPERATOR, Guardrails, Trip
from fedsov.exceptions import FedsovError
from fedsov.messages import TaskEvent, TrainingPlan, UpdateHeader
from fedsov.node.engine import FINISH_GRACE_S, Engine, EngineSettings, RoundReport
from fedsov.node.rounds import TaskStatus
from fedsov.pki.identity import NodeIdentity

__all__ = ["Schedule", "ScheduledEngine"]

log = logging.getLogger("fedsov.coordinator")


@dataclass(frozen=True)
class Schedule:
    num_rounds: int
    max_attempts: int  # of each round, before the federation stops
    training: TrainingPlan  # what every site is asked to do each round

    def training_for(self, number: int) -> TrainingPlan:
        """Round ``number``'s plan: a federated evaluation (of the model it starts
        from) in rounds 1, 1 + evaluate_every, ... only."""
        t = self.training
        if not t.evaluate or (number - 1) % t.evaluate_every == 0:
            return t
        return replace(t, evaluate=False)


class _Interrupted(Exception):
    """A stop ended a wait for sites (no round was open)."""


class ScheduledEngine(Engine):
    """A round runner that drives itself through ``schedule``, resuming stored state."""

    def __init__(
        self,
        settings: EngineSettings,
        schedule: Schedule,
        *,
        guardrails: GuardrailSettings | None = None,
        jurisdictions: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """``guardrails``: the stop rules (none: only the schedule ends the federation).
        ``jurisdictions``: each participant's, from the plan; without one, those their
        certificates showed when they subscribed."""
        super().__init__(settings, **kwargs)
        self.schedule = schedule
        self._prepared = False
        self._jurisdictions = dict(jurisdictions or {})
        self._seen: dict[str, str] = {}  # participant: the jurisdiction its certificate says
        self.guardrails = (
            None if guardrails is None else Guardrails(guardrails, self.jurisdiction_of)
        )
        self.stop: Trip | None = None  # why the federation stopped before its last round
        self._requested: Trip | None = None  # a stop asked for, taken at the next round's end
        self._stopping = asyncio.Event()
        self._cut: frozenset[str] = frozenset()  # sites still working when a round was cut
        self._answered: set[str] = set()  # participants that uploaded or declined since

    def jurisdiction_of(self, participant: str) -> str | None:
        return self._jurisdictions.get(participant) or self._seen.get(participant)

    async def subscribe(self, identity: NodeIdentity) -> AsyncIterator[TaskEvent]:
        events = await super().subscribe(identity)  # admitted: its certificate is checked
        self._seen[identity.name] = identity.jurisdiction
        return events

    def request_stop(self, kind: str, detail: str) -> bool:
        """End the federation once the round in progress closes (at once when none is
        open), as a guardrail does: ``kind`` "operator" (``fedsov stop``, exit 8) or a
        guardrail kind. Call it on the engine's event loop. False when a stop was
        asked for already or the federation has finished."""
        trip = Trip(kind, detail)  # ValueError for an unknown kind
        if self.finished is not None or self._requested is not None:
            return False
        self._requested = trip
        self._stopping.set()
        log.warning("stop requested (%s): %s", kind, detail)
        return True

    async def prepare(self) -> None:
        """Resume stored state, or store the initial model: before the node listens, so
        that a state it must refuse (another config's) stops it before anyone dials in.
        Raises ConfigError / StateError."""
        if self._prepared:
            return
        if not self.resume():
            initial_metrics: dict[str, float] = {}
            if self.evaluator is not None:
                initial_metrics = dict(await asyncio.to_thread(self.evaluator, self.model.arrays()))
            await asyncio.to_thread(self.store.save, self.model, {"metrics": initial_metrics})
        self._prepared = True

    async def run(self) -> list[RoundReport]:
        """Run every round, resuming stored state (``prepare``), unless a stop rule trips
        or a stop is requested first (then ``stop`` says why); returns the reports.

        Raises FedsovError if the federation stalls.
        """
        started = time.monotonic()
        await self.prepare()
        rules = self.guardrails
        if rules is not None and rules.settings.watches_metric and self.evaluator is None:
            log.warning("guardrails: no [evaluation]: no-improvement and regression never trip")
        watch = None
        if self.guardrails is not None and self.guardrails.wall_time_s is not None:
            watch = asyncio.ensure_future(
                self._watch_wall_time(started, self.guardrails.wall_time_s)
            )
        try:
            trip = await self._rounds(started)
        except FedsovError as exc:
            self.finish(f"stopped: {exc}")
            raise
        finally:
            if watch is not None:
                watch.cancel()
        # Cancelled (SIGTERM): sites are not told the federation finished; they
        # reconnect with backoff to the restarted coordinator, which resumes.
        if trip is None:
            self.finish(f"completed {self.schedule.num_rounds} rounds")
        else:
            await self._stopped_by(trip)
        return self.reports

    async def _rounds(self, started: float) -> Trip | None:
        """The schedule's rounds from where the state left off; the stop that ended them
        early, if one did."""
        s = self.schedule
        try:
            trip = self._check(started)  # a resumed federation may be past a limit already
            if trip is not None:
                return trip
            if self.model.round < s.num_rounds and self.state.open_round_row() is None:
                log.info("waiting for %d sites", self.settings.min_sites)
                await self.wait_for_sites(self.settings.min_sites, self.settings.start_timeout_s)
            for number in range(self.model.round + 1, s.num_rounds + 1):
                failed = sum(1 for r in self.reports if r.round == number and not r.completed)
                failure = ""
                for attempt in range(failed + 1, s.max_attempts + 1):
                    training = s.training_for(number)
                    report = await self.run_round(number, attempt=attempt, training=training)
                    trip = self._check(started)
                    if trip is not None:
                        return trip
                    if report.completed:
                        break
                    failure = report.failure
                else:
                    why = failure or (
                        f"fewer than min_updates = {self.settings.min_updates} updates "
                        "were accepted"
                    )
                    raise FedsovError(f"round {number} failed {s.max_attempts} times: {why}")
        except _Interrupted:
            assert self._requested is not None
            return self._requested
        return None

    def _check(self, started: float) -> Trip | None:
        """A stop asked for, else the first guardrail that trips now."""
        if self._requested is not None:
            return self._requested
        if self.guardrails is None:
            return None
        return self.guardrails.check(self.reports, time.monotonic() - started)

    async def _stopped_by(self, trip: Trip) -> None:
        """Record why the federation stops, then tell every participant."""
        self.stop = trip
        log.warning("%s (exit code %d)", trip.status, trip.exit_code)
        await asyncio.to_thread(
            self.audit.stopped,
            kind=trip.kind,
            detail=trip.detail,
            exit_code=int(trip.exit_code),
            round=self.reports[-1].round if self.reports else None,
            operator=trip.kind == OPERATOR,
        )
        self.finish(trip.status)
        await self._serve_cut_sites(FINISH_GRACE_S)

    async def _serve_cut_sites(self, timeout: float) -> None:
        """Sites a cut round left training come back with an upload (refused: late),
        then read the Finished waiting on their task stream; serve them until they all
        came back (up to ``timeout``), or they would find nobody there and retry until
        their backoff gives up."""
        deadline = time.monotonic() + timeout
        while self._cut - self._answered and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def check_upload(self, identity: NodeIdentity, header: UpdateHeader) -> float:
        self._answered.add(identity.name)
        return super().check_upload(identity, header)

    def decline(
        self, identity: NodeIdentity, *, task_id: str, round: int, code: str, reason: str
    ) -> None:
        self._answered.add(identity.name)
        super().decline(identity, task_id=task_id, round=round, code=code, reason=reason)

    async def _watch_wall_time(self, started: float, limit: float) -> None:
        """At the wall-time limit: a round still collecting updates closes now with what
        it has (committed as at its deadline); a wait for sites ends."""
        assert self.guardrails is not None
        await asyncio.sleep(max(0.0, started + limit - time.monotonic()))
        rnd = self.current
        if rnd is None:
            when = "while waiting for sites"
        elif rnd.closed:
            when = f"as round {rnd.number} closed"
        else:
            when = f"round {rnd.number} cut short"
        # (a timer may fire a hair early: the limit is reached all the same)
        trip = self.guardrails.wall_time(max(limit, time.monotonic() - started), when)
        if trip is None or self._requested is not None:
            return
        self._requested = trip
        self._stopping.set()
        if rnd is not None and not rnd.closed:
            log.warning("round %d: the wall-time limit passed; closing it now", rnd.number)
            # Those connected and still training; an upload arriving now is cut off with
            # its answer (LateUpdate) at once.
            pending = {r.site for r in rnd.tasks.values() if r.status is TaskStatus.PENDING}
            self._cut = frozenset(pending & set(self.connected_sites))
            self._answered.clear()
            rnd.done.set()

    async def wait_for_sites(self, needed: int, timeout: float) -> None:
        """As the engine's, but a stop (requested, or the wall-time limit) ends the wait."""
        if self._stopping.is_set():
            raise _Interrupted
        waiting = asyncio.ensure_future(super().wait_for_sites(needed, timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not waiting.done():
                waiting.cancel()
        if self._stopping.is_set():
            if waiting.done() and not waiting.cancelled():
                waiting.exception()  # retrieved: the stop is what ended the wait
            raise _Interrupted
        waiting.result()  # FedsovError: too few sites in time
