"""The round engine: who is connected, which round is open, what each round produced.

It knows nothing of gRPC: fedsov.transport.service adapts it to the wire, so the
logic is tested without a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fedsov.coordinator.model import GlobalModel, ModelStore

if TYPE_CHECKING:
    from fedsov.coordinator.evaluation import Evaluator
from fedsov.coordinator.rounds import Round, TaskRecord, TaskStatus
from fedsov.exceptions import AccessDenied, FedsovError, UnknownTask
from fedsov.messages import (
    Finished,
    Heartbeat,
    PrivacyReport,
    TaskEvent,
    TrainingPlan,
    TrainTask,
    UpdateHeader,
    UploadReceipt,
)
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.strategy import Strategy

__all__ = ["Engine", "EngineSettings", "RoundReport"]

log = logging.getLogger("fedsov.coordinator")


@dataclass(frozen=True)
class EngineSettings:
    federation: str
    num_rounds: int
    min_sites: int  # connected sites needed before a round opens
    min_updates: int  # accepted updates needed for a round to produce a model
    sites_per_round: int  # 0: all connected sites
    round_timeout_s: float
    start_timeout_s: float
    max_attempts: int
    plan: TrainingPlan
    seed: int
    heartbeat_s: float = 10.0
    allowed_sites: frozenset[str] | None = None


@dataclass(frozen=True)
class SiteResult:
    site: str
    task_id: str
    status: str
    reason: str
    num_examples: int
    privacy: PrivacyReport | None
    metrics: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        p = self.privacy
        return {
            "site": self.site,
            "task_id": self.task_id,
            "status": self.status,
            "reason": self.reason,
            "num_examples": self.num_examples,
            "dp": p.enabled if p else None,
            "epsilon": p.epsilon if p and p.enabled else None,
            "delta": p.delta if p and p.enabled else None,
            "noise_multiplier": p.noise_multiplier if p else None,
            "sample_rate": p.sample_rate if p else None,
            "total_steps": p.total_steps if p else None,
            "accountant": p.accountant if p else None,
            "metrics": dict(self.metrics),
        }


@dataclass(frozen=True)
class RoundReport:
    round: int
    attempt: int
    completed: bool
    model_sha256: str
    seconds: float
    metrics: Mapping[str, float]
    sites: tuple[SiteResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "attempt": self.attempt,
            "completed": self.completed,
            "model_sha256": self.model_sha256,
            "seconds": round(self.seconds, 3),
            "metrics": dict(self.metrics),
            "sites": [s.to_json() for s in self.sites],
        }


class Admission(Protocol):
    """Decides whether a certificate identity may take part; raises AccessDenied if not."""

    def __call__(self, identity: NodeIdentity) -> None: ...


@dataclass(frozen=True)
class SiteAdmission:
    """Without a plan: any site of this federation's CA, optionally from an allow-list."""

    federation: str
    allowed_sites: frozenset[str] | None = None

    def __call__(self, identity: NodeIdentity) -> None:
        if identity.federation != self.federation:
            raise AccessDenied(
                f"certificate of {identity.name!r} is for federation {identity.federation!r}, "
                f"this is {self.federation!r}"
            )
        if identity.role is not Role.site:
            raise AccessDenied(
                f"{identity.name!r} has role {identity.role}; only sites take part here"
            )
        if self.allowed_sites is not None and identity.name not in self.allowed_sites:
            raise AccessDenied(f"site {identity.name!r} is not in this federation's site list")


@dataclass
class _Subscriber:
    identity: NodeIdentity
    queue: asyncio.Queue[TaskEvent | None] = field(default_factory=asyncio.Queue)


class Engine:
    """Runs rounds over whichever sites are subscribed; one instance per coordinator."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        initial: GlobalModel,
        strategy: Strategy,
        store: ModelStore,
        work_dir: Path,
        evaluator: Evaluator | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.settings = settings
        self.admit: Admission = admission or SiteAdmission(
            settings.federation, settings.allowed_sites
        )
        self.model = initial
        self.strategy = strategy
        self.store = store
        self.work_dir = work_dir
        self.evaluator = evaluator
        self.on_round = on_round
        self.reports: list[RoundReport] = []
        self.current: Round | None = None
        self.finished: Finished | None = None
        self._subscribers: dict[str, _Subscriber] = {}
        self._site_changed = asyncio.Event()
        self._models: dict[str, GlobalModel] = {initial.sha256: initial}

    # ----- participants -------------------------------------------------------------

    @property
    def connected_sites(self) -> list[str]:
        return sorted(self._subscribers)

    async def subscribe(self, identity: NodeIdentity) -> AsyncIterator[TaskEvent]:
        """Task events for one site; a second subscription of the same site replaces the first."""
        self.admit(identity)
        old = self._subscribers.get(identity.name)
        if old is not None:
            old.queue.put_nowait(None)
        sub = _Subscriber(identity)
        self._subscribers[identity.name] = sub
        self._site_changed.set()
        log.info("site %s subscribed (%d connected)", identity.name, len(self._subscribers))
        if self.finished is not None:
            sub.queue.put_nowait(self.finished)
        elif self.current is not None:  # a site that reconnects mid-round gets its task again
            record = self.current.task_for_site(identity.name)
            if record is not None and record.status is TaskStatus.PENDING:
                sub.queue.put_nowait(record.task)
        return self._events(sub)

    async def _events(self, sub: _Subscriber) -> AsyncIterator[TaskEvent]:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), self.settings.heartbeat_s)
                except TimeoutError:
                    event = Heartbeat(time.time())
                if event is None:
                    return
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            if self._subscribers.get(sub.identity.name) is sub:
                del self._subscribers[sub.identity.name]
                self._site_changed.set()
                log.info("site %s disconnected", sub.identity.name)

    # ----- models and uploads -------------------------------------------------------

    def model_payload(self, sha256: str) -> bytes | bytearray:
        model = self._models.get(sha256)
        if model is None:
            raise UnknownTask(f"no model with SHA-256 {sha256!r} is being served")
        return model.encoded.payload

    async def receive_update(
        self, identity: NodeIdentity, header: UpdateHeader, chunks: AsyncIterator[bytes]
    ) -> UploadReceipt:
        self.admit(identity)
        current = self.current
        if current is None or current.number != header.round:
            raise UnknownTask(
                f"round {header.round} is not open"
                + (f" (round {current.number} is)" if current else "")
            )
        receipt = await current.receive(identity.name, header, chunks)
        log.info("round %d: accepted update of %s", current.number, identity.name)
        return receipt

    def decline(self, identity: NodeIdentity, *, task_id: str, round: int, reason: str) -> None:
        self.admit(identity)
        current = self.current
        if current is None or current.number != round:
            raise UnknownTask(f"round {round} is not open")
        current.decline(identity.name, task_id, round=round, reason=reason)
        log.warning("round %d: %s declined its task: %s", round, identity.name, reason)

    # ----- the round loop -----------------------------------------------------------

    async def _wait_for_sites(self, needed: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self._subscribers) < needed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FedsovError(
                    f"only {len(self._subscribers)} of the {needed} sites needed connected "
                    f"within {timeout:.0f} s ({', '.join(self.connected_sites) or 'none'})"
                )
            self._site_changed.clear()
            try:
                await asyncio.wait_for(self._site_changed.wait(), remaining)
            except TimeoutError:
                continue

    def _select(self, round_number: int, attempt: int) -> list[str]:
        sites = self.connected_sites
        k = self.settings.sites_per_round
        if not k or k >= len(sites):
            return sites
        rng = random.Random(f"{self.settings.seed}:{round_number}:{attempt}")
        return sorted(rng.sample(sites, k))

    def _open_round(
        self,
        number: int,
        attempt: int,
        deadline: float | None = None,
        plan: TrainingPlan | None = None,
        round_seed: int | None = None,
    ) -> Round:
        deadline = deadline or time.time() + self.settings.round_timeout_s
        if round_seed is None:
            round_seed = (self.settings.seed * 1_000_003 + number) % 2**63
        tasks = {}
        for site in self._select(number, attempt):
            task = TrainTask(
                task_id=uuid.uuid4().hex,
                round=number,
                model_sha256=self.model.sha256,
                model_size=self.model.encoded.size,
                manifest=self.model.manifest,
                plan=plan or self.settings.plan,
                deadline_unix=deadline,
                round_seed=round_seed,
            )
            tasks[task.task_id] = TaskRecord(task=task, site=site)
        rnd = Round(
            number=number,
            model=self.model,
            tasks=tasks,
            deadline=deadline,
            _aggregate=self.strategy.start_round(self.model.manifest),
            spool_dir=self.work_dir / "spool" / f"round-{number:04d}",
        )
        self.current = rnd
        for record in tasks.values():
            sub = self._subscribers.get(record.site)
            if sub is not None:
                sub.queue.put_nowait(record.task)
        log.info("round %d opened with %d sites (attempt %d)", number, len(tasks), attempt)
        return rnd

    async def _close(self, rnd: Round, attempt: int) -> RoundReport:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rnd.done.wait(), max(0.0, rnd.deadline - time.time()))
        rnd.close()
        accepted = rnd.by_status(TaskStatus.ACCEPTED)
        completed = len(accepted) >= self.settings.min_updates
        metrics: dict[str, float] = {}
        if completed:
            new = rnd.next_model()
            if self.evaluator is not None:
                metrics = dict(await asyncio.to_thread(self.evaluator, new.arrays()))
            contributors = sorted(r.site for r in accepted)
            await asyncio.to_thread(
                self.store.save, new, {"contributors": contributors, "metrics": metrics}
            )
            self._models = {new.sha256: new}
            self.model = new
        report = RoundReport(
            round=rnd.number,
            attempt=attempt,
            completed=completed,
            model_sha256=self.model.sha256,
            seconds=time.time() - rnd.opened_at,
            metrics=metrics,
            sites=tuple(_site_result(r) for r in sorted(rnd.tasks.values(), key=lambda r: r.site)),
        )
        self.current = None
        log.info(
            "round %d %s: %d/%d updates accepted%s",
            rnd.number,
            "closed" if completed else "FAILED",
            len(accepted),
            len(rnd.tasks),
            "".join(f", {k} {v:.4g}" for k, v in metrics.items()),
        )
        return report

    async def run_round(
        self,
        number: int,
        *,
        attempt: int = 1,
        base: GlobalModel | None = None,
        deadline: float | None = None,
        plan: TrainingPlan | None = None,
        round_seed: int | None = None,
    ) -> RoundReport:
        """Run one round now, over ``base`` (default: the current model) until ``deadline``.

        A regional aggregator calls this for each task its upstream pushes, passing on
        the upstream's model, deadline, training plan and round seed. Raises
        FedsovError when fewer than ``min_sites`` sites connect in time.
        """
        if base is not None:
            self.model = base
            self._models = {base.sha256: base}
        wait = self.settings.start_timeout_s
        if deadline is not None:
            wait = min(wait, deadline - time.time())
        await self._wait_for_sites(self.settings.min_sites, max(0.0, wait))
        rnd = self._open_round(number, attempt, deadline, plan, round_seed)
        report = await self._close(rnd, attempt)
        self.reports.append(report)
        if self.on_round is not None:
            self.on_round(report)
        return report

    async def run(self) -> list[RoundReport]:
        """Run every round; returns the reports. Raises FedsovError if the federation stalls."""
        s = self.settings
        initial_metrics: dict[str, float] = {}
        if self.evaluator is not None:
            initial_metrics = dict(await asyncio.to_thread(self.evaluator, self.model.arrays()))
        await asyncio.to_thread(self.store.save, self.model, {"metrics": initial_metrics})
        log.info("waiting for %d sites", s.min_sites)
        await self._wait_for_sites(s.min_sites, s.start_timeout_s)
        try:
            for number in range(1, s.num_rounds + 1):
                for attempt in range(1, s.max_attempts + 1):
                    if (await self.run_round(number, attempt=attempt)).completed:
                        break
                else:
                    raise FedsovError(
                        f"round {number} failed {s.max_attempts} times: fewer than "
                        f"min_updates = {s.min_updates} updates were accepted"
                    )
            self.finish(f"completed {s.num_rounds} rounds")
        except BaseException as exc:
            self.finish(f"stopped: {exc}" if str(exc) else "stopped")
            raise
        return self.reports

    def finish(self, reason: str) -> None:
        """Tell every connected participant (and later ones) that the federation ended."""
        self.finished = Finished(
            rounds=len([r for r in self.reports if r.completed]),
            model_sha256=self.model.sha256,
            reason=reason,
        )
        for sub in list(self._subscribers.values()):
            sub.queue.put_nowait(self.finished)


def _site_result(record: TaskRecord) -> SiteResult:
    header = record.header
    return SiteResult(
        site=record.site,
        task_id=record.task.task_id,
        status=str(record.status),
        reason=record.reason,
        num_examples=header.num_examples if header else 0,
        privacy=header.privacy if header else None,
        metrics=dict(header.metrics) if header else {},
    )
