"""The round engine: who is connected, which round is open, what each round produced.

It knows nothing of gRPC: fedsov.transport.service adapts it to the wire, so the
logic is tested without a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fedsov.audit.trail import AuditTrail, NullAuditTrail
from fedsov.codec import DEFAULT_CHUNK_SIZE
from fedsov.config import MAX_EXAMPLES, MAX_UPDATE_NORM, SecureAggregationSettings
from fedsov.node.contributors import ContributorCheck
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.node.state import MemoryStateStore, ModelRow, RoundRow, StateStore, TaskRow

if TYPE_CHECKING:
    from fedsov.node.evaluation import Evaluator
from fedsov.exceptions import (
    AccessDenied,
    FedsovError,
    LateUpdate,
    NonFiniteTensor,
    ProtocolError,
    SecureAggregation,
    SessionConflict,
    StateError,
    UnknownTask,
)
from fedsov.faults import crash_point
from fedsov.messages import (
    Finished,
    Heartbeat,
    PrivacyReport,
    SecAggParams,
    SecAggReply,
    SecAggRequest,
    TaskEvent,
    TrainingPlan,
    TrainTask,
    UpdateHeader,
    UploadReceipt,
    header_from_json,
)
from fedsov.metrics import NodeMetrics
from fedsov.node.rounds import Round, TaskRecord, TaskStatus, UpdateJudge
from fedsov.node.secure import SecureStages
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.privacy.evaluation import federated_means, sum_releases
from fedsov.randomness import secret_random
from fedsov.secagg import RegionRound, round_params
from fedsov.strategy import Strategy
from fedsov.strategy.secure import SecureAggregate

__all__ = [
    "FINISH_GRACE_S",
    "PUBLIC_METRICS",
    "TRAINING_SECONDS",
    "Engine",
    "EngineSettings",
    "RoundReport",
]

# How long a finished aggregator waits for its last round's participants to hear it.
FINISH_GRACE_S = 15.0

TRAINING_SECONDS = "training_seconds"
"""A participant's wall-clock seconds of local training in the round (rounded up to
0.1 s; a region: its sites' sum), for the coordinator's compute budget. Public: the
upstream already times the round trip from task to upload, and the steps and examples
that fix the training time are in the header (docs/privacy.md)."""

PUBLIC_METRICS = frozenset({"sites", TRAINING_SECONDS})
"""Update metrics public by construction (a region's count of contributing sites, the
training time); any other a participant sends (a training loss: an unnoised function of
its data) is dropped on receipt, so no report, receipt or summary ever stores it."""

log = logging.getLogger("fedsov.node")

_ARRAYS_KEY = "_arrays"  # in a stored strategy state: the file of the strategy's arrays


@dataclass(frozen=True)
class EngineSettings:
    """How a node runs each round; which rounds run is its driver's (a coordinator's
    schedule, or a regional aggregator's upstream)."""

    federation: str
    min_sites: int  # connected sites needed before a round opens
    min_updates: int  # accepted updates needed for a round to produce a model
    sites_per_round: int  # 0: all connected sites
    round_timeout_s: float
    start_timeout_s: float
    seed: int
    heartbeat_s: float = 10.0
    allowed_sites: frozenset[str] | None = None
    # Over-selection: ask this many sites more than sites_per_round, and close the round
    # as soon as sites_per_round updates are in (the slowest are told they are late).
    over_select: int = 0
    plan_sha256: str | None = None  # recorded with every model version (lineage)
    max_update_norm: float = MAX_UPDATE_NORM  # an update with a larger L2 norm is refused
    max_examples: int = MAX_EXAMPLES  # an update claiming more examples is refused
    secure: SecureAggregationSettings | None = None  # SecAgg+ with the sites (fedsov.secagg)


@dataclass(frozen=True)
class SiteResult:
    site: str
    task_id: str
    status: str
    reason: str
    num_examples: int
    privacy: PrivacyReport | None
    metrics: Mapping[str, float]
    contributors: tuple[str, ...] = ()  # the sites behind an accepted update

    def to_json(self) -> dict[str, Any]:
        p = self.privacy
        return {
            "site": self.site,
            "task_id": self.task_id,
            "status": self.status,
            "reason": self.reason,
            "num_examples": self.num_examples,
            "dp": p.enabled if p else None,
            "level": p.effective_level.value if p else None,  # what ε protects: docs/privacy.md
            "epsilon": p.epsilon if p and p.enabled else None,
            "delta": p.delta if p and p.enabled else None,
            "noise_multiplier": p.noise_multiplier if p else None,
            "sample_rate": p.sample_rate if p else None,
            "total_steps": p.total_steps if p else None,
            "steps": p.steps if p else None,
            "max_grad_norm": p.max_grad_norm if p else None,
            "accountant": p.accountant if p else None,
            "metrics": dict(self.metrics),
            "contributors": list(self.contributors),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SiteResult:
        privacy = None
        if data["dp"] is not None:
            privacy = PrivacyReport(
                enabled=bool(data["dp"]),
                epsilon=data["epsilon"] or 0.0,
                delta=data["delta"] or 0.0,
                noise_multiplier=data["noise_multiplier"],
                max_grad_norm=data["max_grad_norm"],
                sample_rate=data["sample_rate"],
                steps=data["steps"],
                total_steps=data["total_steps"],
                accountant=data["accountant"],
                level=data.get("level"),  # None from an older fedsov: derived
            )
        return cls(
            site=data["site"],
            task_id=data["task_id"],
            status=data["status"],
            reason=data["reason"],
            num_examples=data["num_examples"],
            privacy=privacy,
            metrics=dict(data["metrics"]),
            contributors=tuple(data.get("contributors", ())),
        )


@dataclass(frozen=True)
class RoundReport:
    round: int
    attempt: int
    completed: bool
    model_sha256: str
    seconds: float
    metrics: Mapping[str, float]
    sites: tuple[SiteResult, ...]
    # The connected sites the round's participants were drawn from (sorted): the n of
    # an m-of-n sample, as it was when the round opened.
    population: tuple[str, ...] = ()
    failure: str = ""  # why a round with enough updates produced no model
    # Federated evaluation of the model this round started from (the previous round's):
    # each metric's mean over the accepted updates' noised sums (fedsov.privacy.evaluation).
    federated: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return (
            {
                "round": self.round,
                "attempt": self.attempt,
                "completed": self.completed,
                "model_sha256": self.model_sha256,
                "seconds": round(self.seconds, 3),
                "metrics": dict(self.metrics),
                "sites": [s.to_json() for s in self.sites],
                "population": list(self.population),
            }
            | ({"failure": self.failure} if self.failure else {})
            | ({"federated": dict(self.federated)} if self.federated else {})
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundReport:
        return cls(
            round=data["round"],
            attempt=data["attempt"],
            completed=data["completed"],
            model_sha256=data["model_sha256"],
            seconds=data["seconds"],
            metrics=dict(data["metrics"]),
            sites=tuple(SiteResult.from_json(s) for s in data["sites"]),
            population=tuple(data.get("population", ())),
            failure=data.get("failure", ""),
            federated=dict(data.get("federated", {})),
        )


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
        state: StateStore | None = None,
        fingerprint: str | None = None,
        audit: AuditTrail | None = None,
        contributors: ContributorCheck | None = None,
        judge: UpdateJudge | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        """``state``: where rounds, receipts and models are recorded (default: memory,
        gone with the process). ``fingerprint``: what a resumed state must have been
        written with (default: federation, seed, strategy and the model's manifest).
        ``contributors``: what an update may claim is behind it (default: without a plan).
        ``judge``: the plan's say on each update header (a refused one rejects its task).
        ``metrics``: the Prometheus metrics it moves (default: a registry nobody serves)."""
        self.settings = settings
        self.state: StateStore = state or MemoryStateStore()
        self.fingerprint = fingerprint or _fingerprint(settings, initial, strategy)
        self.audit: AuditTrail = audit or NullAuditTrail()
        self.contributors = contributors or ContributorCheck(settings.federation)
        self.judge = judge
        self.metrics = metrics or NodeMetrics()
        self.metrics.watch(participants=lambda: len(self._subscribers), round=self._last_round)
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
        self._told: set[str] = set()  # participants that received Finished
        self._told_changed = asyncio.Event()
        self._arrays_ref: dict[str, str] | None = None  # the committed strategy arrays' file

    # ----- participants -------------------------------------------------------------

    @property
    def federation(self) -> str:
        return self.settings.federation

    @property
    def current_round(self) -> int:
        return self.current.number if self.current else 0

    def _last_round(self) -> int:
        """The round open now, else the last one reported (0 before any)."""
        if self.current is not None:
            return self.current.number
        return max((r.round for r in self.reports), default=self.model.round)

    def jurisdiction_of(self, name: str) -> str | None:
        """A connected participant's jurisdiction, from its certificate."""
        sub = self._subscribers.get(name)
        return sub.identity.jurisdiction if sub is not None else None

    @property
    def connected_sites(self) -> list[str]:
        return sorted(self._subscribers)

    async def subscribe(self, identity: NodeIdentity) -> AsyncIterator[TaskEvent]:
        """Task events for one site. A second subscription with the same certificate (a
        reconnect) replaces the first; one with another certificate is refused while the
        first lives (SessionConflict)."""
        self.admit(identity)
        old = self._subscribers.get(identity.name)
        if old is not None:
            self._take_over(old, identity)
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

    def _take_over(self, old: _Subscriber, identity: NodeIdentity) -> None:
        """End ``old``'s session for ``identity``'s, if both hold the same certificate
        (in insecure mode neither has one); else refuse and record ``identity``."""
        theirs, mine = old.identity.certificate_sha256, identity.certificate_sha256
        if theirs != mine:
            why = (
                f"{identity.name!r} already has a live session with another certificate "
                f"(SHA-256 {str(theirs)[:16]}); this one ({str(mine)[:16]}) may subscribe "
                "once that session ends"
            )
            log.warning("subscription refused: %s", why)
            self.refused(identity, "session-conflict", why)
            raise SessionConflict(why)
        log.info("site %s reconnected; its previous session is closed", identity.name)
        old.queue.put_nowait(None)

    async def _events(self, sub: _Subscriber) -> AsyncIterator[TaskEvent]:
        told = False
        try:
            while True:
                try:
                    async with asyncio.timeout(self.settings.heartbeat_s):
                        event = await sub.queue.get()
                except TimeoutError:
                    event = Heartbeat(time.time())
                if event is None:
                    return
                # Handed to the transport: the stream may end at this yield (the site
                # closes it on Finished), and it was told all the same.
                told = isinstance(event, Finished)
                yield event
                if told:
                    return
        finally:
            if told:
                self._told.add(sub.identity.name)
                self._told_changed.set()
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

    def _open(self, round: int) -> Round:
        """The open round ``round``; LateUpdate if it already closed, else UnknownTask."""
        current = self.current
        if current is not None and current.number == round:
            return current
        last = max((r.round for r in self.reports), default=0)
        if 0 < round <= last and (current is None or round < current.number):
            raise LateUpdate(
                f"round {round} is closed"
                + (f" (round {current.number} is open)" if current else "")
                + "; this answer arrived too late and was not counted"
            )
        raise UnknownTask(
            f"round {round} is not open" + (f" (round {current.number} is)" if current else "")
        )

    def check_upload(self, identity: NodeIdentity, header: UpdateHeader) -> float:
        """Before an upload takes a slot: admitted, its own open task, a sane header (a
        bad one rejects the task). An accepted update sent again passes (replayed)."""
        self.admit(identity)
        header = self.contributors(identity, header)  # a forged list takes no slot either
        current = self._open(header.round)
        if current.replay(identity.name, header) is None:
            current.check_upload(identity.name, header)
        return current.deadline

    async def receive_update(
        self,
        identity: NodeIdentity,
        header: UpdateHeader,
        chunks: AsyncIterator[bytes | memoryview],
    ) -> UploadReceipt:
        self.admit(identity)
        header = _public_metrics_only(identity.name, header)
        header = self.contributors(identity, header)  # only what the sender can prove
        current = self._open(header.round)
        receipt = current.replay(identity.name, header)
        if receipt is None:
            started = time.monotonic()
            receipt = await current.receive(identity.name, header, chunks)
            self.metrics.update_received(header.payload_size, time.monotonic() - started)
            log.info("round %d: accepted update of %s", current.number, identity.name)
        else:
            log.info(
                "round %d: %s sent its update again; counted once", current.number, identity.name
            )
        # Once per update, also one whose ack a crash cut off; fsynced off the event loop
        # (the ledger orders its writers), on disk before the receipt leaves.
        await asyncio.to_thread(self.audit.update_received, identity, header)
        return receipt

    def decline(
        self, identity: NodeIdentity, *, task_id: str, round: int, code: str, reason: str
    ) -> None:
        self.admit(identity)
        why = f"{code}: {reason}" if code else reason
        self._open(round).decline(identity.name, task_id, round=round, reason=why)
        log.warning("round %d: %s declined its task: %s", round, identity.name, why)
        self.audit.declined(
            round=round,
            peer=identity.name,
            peer_jurisdiction=identity.jurisdiction,
            code=code,
            reason=reason,
        )

    async def secure_step(self, identity: NodeIdentity, request: SecAggRequest) -> SecAggReply:
        """One step of the open secure round, for the site's own open task."""
        self.admit(identity)
        current = self._open(request.round)
        record = current.tasks.get(request.task_id)
        if record is None or record.site != identity.name:
            raise UnknownTask(f"no task {request.task_id!r} of round {request.round} for you")
        if current.secure is None:
            raise ProtocolError(f"round {current.number} is not securely aggregated")
        return await current.secure.step(identity.name, request)

    async def model_sent(self, identity: NodeIdentity, sha256: str) -> None:
        """A participant downloaded the whole of model ``sha256`` (recorded off the loop)."""
        model = self._models.get(sha256)
        if model is not None:
            self.metrics.model_sent(model.encoded.size)
        current = self.current
        await asyncio.to_thread(
            self.audit.model_sent,
            round=current.number if current else None,
            peer=identity,
            sha256=sha256,
        )

    def refused(self, identity: NodeIdentity, decision: str, reason: str) -> None:
        """The policy refused ``identity`` (admission, plan): recorded for the auditors."""
        self.metrics.policy_refused(decision)
        self.audit.refused(
            peer=identity.name,
            peer_jurisdiction=identity.jurisdiction,
            decision=decision,
            reason=reason,
        )

    # ----- the round loop -----------------------------------------------------------

    async def wait_for_sites(self, needed: int, timeout: float) -> None:
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
                async with asyncio.timeout(remaining):
                    await self._site_changed.wait()
            except TimeoutError:
                continue

    def _select(self, round_number: int, attempt: int, population: list[str]) -> list[str]:
        """The round's participants: ``sites_per_round`` (+ ``over_select``) of
        ``population``, drawn with the OS CSPRNG (site-level DP amplification rests on
        a sample the upstream cannot predict); seeded only in the insecure
        reproducible mode."""
        k = self.settings.sites_per_round
        if k:
            k += self.settings.over_select
        if not k or k >= len(population):
            return list(population)
        rng = secret_random([self.settings.seed, round_number, attempt])
        return sorted(rng.sample(population, k))

    def _open_round(
        self,
        number: int,
        attempt: int,
        deadline: float | None,
        training: TrainingPlan,
        round_seed: int | None = None,
    ) -> Round:
        """A new round, stored with its tasks before any task is pushed."""
        deadline = deadline or time.time() + self.settings.round_timeout_s
        training = self.strategy.configure_training(training)
        if round_seed is None:
            round_seed = (self.settings.seed * 1_000_003 + number) % 2**63
        population = tuple(self.connected_sites)  # snapshot: what the sample is drawn from
        selected = self._select(number, attempt, list(population))
        secure = self._secure_params(len(selected))
        upload_by = deadline if secure is None else _upload_deadline(deadline, secure)
        tasks = {}
        for site in selected:
            task = self._task(uuid.uuid4().hex, number, training, upload_by, round_seed, secure)
            tasks[task.task_id] = TaskRecord(task=task, site=site)
        self.state.open_round(
            RoundRow(
                number,
                attempt,
                self.model.sha256,
                round_seed,
                asdict(training),
                time.time(),
                population=population,
            ),
            [TaskRow(t, number, attempt, r.site) for t, r in tasks.items()],
        )
        crash_point("round-opened", number)
        return self._start(number, attempt, tasks, deadline, population, secure)

    def _secure_params(self, sites: int) -> SecAggParams | None:
        """This round's secure aggregation, for ``sites`` selected sites (None: plain)."""
        config = self.settings.secure
        if config is None:
            return None
        weighted = self.strategy.site_level_dp() is None  # DP-FedAvg: each site counts once
        return round_params(
            config,
            sites=sites,
            clip=self.strategy.secure_clip(config.clip),
            weighted=weighted,
            max_weight=self.settings.max_examples,
        )

    def _task(
        self,
        task_id: str,
        number: int,
        plan: TrainingPlan,
        deadline: float,
        round_seed: int,
        secure: SecAggParams | None = None,
    ) -> TrainTask:
        return TrainTask(
            task_id=task_id,
            round=number,
            model_sha256=self.model.sha256,
            model_size=self.model.encoded.size,
            manifest=self.model.manifest,
            plan=plan,
            deadline_unix=deadline,
            round_seed=round_seed,
            secure=secure,
        )

    def _start(
        self,
        number: int,
        attempt: int,
        tasks: dict[str, TaskRecord],
        deadline: float,
        population: tuple[str, ...],
        secure: SecAggParams | None = None,
    ) -> Round:
        target = self.settings.sites_per_round if self.settings.over_select else 0
        aggregate = self.strategy.start_round(self.model.manifest)
        if secure is not None:
            aggregate = SecureAggregate(aggregate, self.model.manifest, secure)
        rnd = Round(
            number=number,
            model=self.model,
            tasks=tasks,
            # the tasks' own deadline: a secure round's uploads close before the round
            deadline=min((r.task.deadline_unix for r in tasks.values()), default=deadline),
            _aggregate=aggregate,
            spool_dir=self.work_dir / "spool" / f"round-{number:04d}-{attempt}",
            attempt=attempt,
            state=self.state,
            target_updates=target,
            population=population,
            max_update_norm=self.settings.max_update_norm,
            max_examples=self.settings.max_examples,
            judge=self.judge,
            upload_manifest=aggregate.manifest if isinstance(aggregate, SecureAggregate) else None,
        )
        if secure is not None:
            rnd.secure = self._stages(rnd, secure)
            rnd.secure.start()
        rnd.final_deadline = deadline
        self.current = rnd
        return rnd

    def _stages(self, rnd: Round, secure: SecAggParams) -> SecureStages:
        sites = frozenset(r.site for r in rnd.tasks.values())
        return SecureStages(
            RegionRound(secure, rnd.number, sites),
            active=lambda: {
                r.site
                for r in rnd.tasks.values()
                if r.status in (TaskStatus.PENDING, TaskStatus.RECEIVING, TaskStatus.ACCEPTED)
            },
            drop=rnd.drop,
            on_failure=rnd.done.set,
        )

    def _push(self, rnd: Round) -> None:
        for record in rnd.tasks.values():
            sub = self._subscribers.get(record.site)
            if sub is not None and record.status is TaskStatus.PENDING:
                sub.queue.put_nowait(record.task)
        crash_point("tasks-pushed", rnd.number)
        log.info(
            "round %d opened with %d sites (attempt %d)", rnd.number, len(rnd.tasks), rnd.attempt
        )

    async def _reopen_round(self, row: RoundRow, deadline: float | None = None) -> Round:
        """The round that was open when the process stopped, as it was stored.

        Same tasks (ids, sites, seed); a new deadline; refusals kept; acknowledged
        updates folded again from their spools, each exactly once.
        """
        deadline = deadline or time.time() + self.settings.round_timeout_s
        plan = TrainingPlan(**row.plan)
        tasks = {}
        for t in self.state.tasks(row.number, row.attempt):
            task = self._task(t.task_id, row.number, plan, deadline, row.round_seed)
            record = TaskRecord(task=task, site=t.site)
            if t.status in (TaskStatus.DECLINED, TaskStatus.REJECTED):
                record.status, record.reason = TaskStatus(t.status), t.reason
            tasks[t.task_id] = record
        rnd = self._start(row.number, row.attempt, tasks, deadline, row.population)
        receipts = self.state.receipts(row.number, row.attempt)
        for receipt in receipts:
            spool = rnd.spool_dir / receipt.spool
            try:
                header = _public_metrics_only(receipt.site, header_from_json(receipt.header))
            except (KeyError, TypeError, ValueError, FedsovError) as exc:
                raise StateError(f"receipt of task {receipt.task_id}: bad header: {exc}") from exc
            if not spool.is_file():
                raise StateError(f"acknowledged update {spool} is missing")
            await rnd.receive(receipt.site, header, _file_chunks(spool), restoring=True)
        log.warning(
            "round %d re-opened after a restart (attempt %d): %d acknowledged updates kept",
            row.number,
            row.attempt,
            len(receipts),
        )
        return rnd

    async def _close(self, rnd: Round) -> RoundReport:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation
        # (SIGTERM) that lands as the awaited event fires, and the round ran on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, rnd.deadline - time.time())):
                await rnd.done.wait()
        crash_point("round-closing", rnd.number)
        rnd.close()
        await rnd.settled()  # complete uploads being stored and folded count
        accepted = rnd.by_status(TaskStatus.ACCEPTED)
        completed = len(accepted) >= self.settings.min_updates
        metrics: dict[str, float] = {}
        new: GlobalModel | None = None
        failure = ""
        sites = [_site_result(r) for r in sorted(rnd.tasks.values(), key=lambda r: r.site)]
        if completed and len(accepted) < self.strategy.updates_needed():
            completed = False
            failure = (
                f"{self.strategy.name} needs at least {self.strategy.updates_needed()} "
                f"updates, the round got {len(accepted)}"
            )
            log.error("round %d: %s", rnd.number, failure)
        if rnd.secure is not None:
            completed, failure = await self._unmask(rnd, accepted, completed, failure)
        if completed:
            try:
                new = await asyncio.to_thread(rnd.next_model)
            except NonFiniteTensor as exc:  # the round fails; the current model stays
                completed, failure = False, str(exc)
                log.error("round %d: %s", rnd.number, failure)
                if self.strategy.arrays():  # stepped in write_result: back to the commit's
                    await asyncio.to_thread(self._restore_strategy)
        arrays_ref = self._arrays_ref
        if new is not None:
            if self.evaluator is not None:
                metrics = dict(await asyncio.to_thread(self.evaluator, new.arrays()))
            lineage = _lineage([s for s in sites if s.status == TaskStatus.ACCEPTED])
            await asyncio.to_thread(self.store.save, new, lineage | {"metrics": metrics})
            if arrays := self.strategy.arrays():
                arrays_ref = await asyncio.to_thread(self.store.save_strategy_arrays, new, arrays)
            crash_point("model-written", rnd.number)
        report = RoundReport(
            round=rnd.number,
            attempt=rnd.attempt,
            completed=completed,
            model_sha256=(new or self.model).sha256,
            seconds=time.time() - rnd.opened_at,
            metrics=metrics,
            sites=tuple(sites),
            population=rnd.population,
            failure=failure,
            federated=federated_means(s.metrics for s in sites if s.status == TaskStatus.ACCEPTED),
        )
        await asyncio.to_thread(
            self.state.close_round,
            rnd.number,
            rnd.attempt,
            report=report.to_json(),
            model=None if new is None else self._model_row(new, report),
            strategy_state=self._strategy_state(arrays_ref),
        )
        crash_point("round-committed", rnd.number)
        self._replace_arrays_ref(arrays_ref)
        await asyncio.to_thread(shutil.rmtree, rnd.spool_dir, ignore_errors=True)
        if new is not None:
            self._models = {new.sha256: new}
            self.model = new
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

    async def _unmask(
        self, rnd: Round, accepted: list[TaskRecord], completed: bool, failure: str
    ) -> tuple[bool, str]:
        """Remove a secure round's masks (or fail it, with its reason); audited either way."""
        stages = rnd.secure
        assert stages is not None
        p = stages.protocol
        try:
            if stages.failure is not None:
                raise stages.failure
            if completed:
                unmasking = await stages.unmask([r.site for r in accepted], rnd.final_deadline)
                aggregate = rnd.aggregate
                assert isinstance(aggregate, SecureAggregate)
                await asyncio.to_thread(aggregate.unmask, unmasking)
        except SecureAggregation as exc:
            completed, failure = False, str(exc)
            log.error("round %d: %s", rnd.number, failure)
        finally:
            stages.cancel()
        await asyncio.to_thread(
            self.audit.secure_aggregate,
            round=rnd.number,
            protocol="secagg+",
            threshold=p.params.threshold,
            neighbours=p.params.neighbours,
            ring_bits=p.params.ring_bits,
            survivors=p.survivors or (),
            dropped=p.dropped,
            failure=failure,
        )
        return completed, failure

    def _model_row(self, model: GlobalModel, report: RoundReport | None) -> ModelRow:
        """A model version: what went into it (lineage), under its content hash."""
        accepted = [s for s in report.sites if s.status == TaskStatus.ACCEPTED] if report else []
        return ModelRow(
            sha256=model.sha256,
            round=model.round,
            parent=model.parent,
            file=self.store.blob_name(model.sha256),
            metadata=_lineage(accepted)
            | {
                "metrics": dict(report.metrics) if report else {},
                "plan_sha256": self.settings.plan_sha256,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )

    async def run_round(
        self,
        number: int,
        *,
        training: TrainingPlan,
        attempt: int = 1,
        base: GlobalModel | None = None,
        deadline: float | None = None,
        round_seed: int | None = None,
    ) -> RoundReport:
        """Run one round now, over ``base`` (default: the current model) until ``deadline``,
        asking each site to train with ``training``.

        A regional aggregator calls this for each task its upstream pushes, passing on
        the upstream's model, deadline, training plan and round seed. The round that
        was open when the process stopped is re-opened if it is this one (same round
        over the same model); any other is closed as abandoned. Raises FedsovError
        when fewer than ``min_sites`` sites connect in time.
        """
        if base is not None:
            self.model = base
            self._models = {base.sha256: base}
        stored = self.state.open_round_row()
        if stored is not None and (stored.number, stored.base_sha256) != (
            number,
            self.model.sha256,
        ):
            self._abandon(stored, f"superseded by round {number}")
            stored = None
        if stored is not None and self.settings.secure is not None:
            # its sites' keys and shares died with the process: the round starts again
            self._abandon(stored, "a secure round cannot resume after a restart")
            stored = None
        if stored is not None:
            rnd = await self._reopen_round(stored, deadline)
        else:
            # An upstream's new attempt at a round is a new attempt here too.
            attempt = max(attempt, 1 + sum(1 for r in self.reports if r.round == number))
            wait = self.settings.start_timeout_s
            if deadline is not None:
                wait = min(wait, deadline - time.time())
            await self.wait_for_sites(self.settings.min_sites, max(0.0, wait))
            rnd = self._open_round(number, attempt, deadline, training, round_seed)
            self.metrics.round_opened()
        self._push(rnd)
        report = await self._close(rnd)
        self.metrics.round_closed(
            completed=report.completed,
            seconds=report.seconds,
            outcomes=[(s.status, s.reason) for s in report.sites],
            epsilons=[
                (s.site, s.privacy.epsilon)
                for s in report.sites
                if s.status == "accepted" and s.privacy is not None and s.privacy.enabled
            ],
        )
        self.reports.append(report)
        if self.on_round is not None:
            self.on_round(report)
        return report

    def _abandon(self, row: RoundRow, why: str) -> None:
        report = RoundReport(row.number, row.attempt, False, row.base_sha256, 0.0, {}, ())
        self.state.close_round(
            row.number,
            row.attempt,
            report=report.to_json() | {"abandoned": why},
            model=None,
            strategy_state=self._strategy_state(self._arrays_ref),
        )
        self.reports.append(report)
        shutil.rmtree(self.work_dir / "spool" / f"round-{row.number:04d}-{row.attempt}", True)
        log.warning("round %d (attempt %d) abandoned: %s", row.number, row.attempt, why)

    def resume(self) -> bool:
        """Load what the state store holds: True when it held this federation's state.

        The current model becomes the latest stored one (checked against its hash),
        the reports those of every closed round; the strategy gets its state back.
        Raises ConfigError when the store was written with another config.
        """
        if not self.state.bind(self.settings.federation, self.fingerprint):
            self.state.add_model(self._model_row(self.model, None))
            return False
        row = self.state.latest_model()
        if row is None:
            raise StateError("the state store holds no model")
        if row.sha256 != self.model.sha256:
            self.model = self.store.load(
                row.sha256, round=row.round, parent=row.parent, manifest=self.model.manifest
            )
            self._models = {row.sha256: self.model}
        self.reports = [RoundReport.from_json(r) for r in self.state.reports()]
        self._restore_strategy()
        log.warning(
            "resumed from the state store: model of round %d (%s), %d round attempts recorded",
            self.model.round,
            self.model.sha256[:12],
            len(self.reports),
        )
        return True

    def _strategy_state(self, arrays_ref: dict[str, str] | None) -> dict[str, Any]:
        """The strategy's state as committed: with the file of its arrays, if any."""
        state = self.strategy.state()
        return state if arrays_ref is None else state | {_ARRAYS_KEY: arrays_ref}

    def _restore_strategy(self) -> None:
        """The strategy as the last commit left it, its arrays read back from their file."""
        state = self.state.strategy_state()
        ref = state.pop(_ARRAYS_KEY, None)
        self.strategy.restore(state)
        self.strategy.restore_arrays({} if ref is None else self.store.load_strategy_arrays(ref))
        self._arrays_ref = ref

    def _replace_arrays_ref(self, ref: dict[str, str] | None) -> None:
        """Once a commit names ``ref``, the file of the previous one goes."""
        old, self._arrays_ref = self._arrays_ref, ref
        if old is not None and old != ref:
            self.store.remove_strategy_arrays(old)

    def completed(self, number: int, base_sha256: str) -> RoundReport | None:
        """The stored report of round ``number`` over ``base_sha256``, if it completed and its
        model is the current one (a regional round a restarted aggregator need not rerun)."""
        report = next(
            (r for r in reversed(self.reports) if r.round == number and r.completed), None
        )
        if report is None or self.model.parent != base_sha256 or self.model.round != number:
            return None
        return report

    async def linger(self, timeout: float) -> None:
        """After finishing, wait (up to ``timeout``) until every participant of the last
        round heard it: one reconnecting after a restart must not find nobody there."""
        if self.finished is None:
            return
        last = self.reports[-1] if self.reports else None
        expected = {s.site for s in last.sites} if last else set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not expected <= self._told:
                    self._told_changed.clear()
                    await self._told_changed.wait()
        missing = sorted(expected - self._told)
        if missing:
            log.warning("stopping without telling %s that the federation finished", missing)

    def finish(self, reason: str) -> None:
        """Tell every connected participant (and later ones) that the federation ended."""
        self.finished = Finished(
            rounds=len([r for r in self.reports if r.completed]),
            model_sha256=self.model.sha256,
            reason=reason,
        )
        for sub in list(self._subscribers.values()):
            sub.queue.put_nowait(self.finished)


def _upload_deadline(deadline: float, secure: SecAggParams) -> float:
    """When a secure round's uploads close: early enough to collect the survivors' shares."""
    return deadline - min(secure.stage_timeout_s, max(0.0, deadline - time.time()) / 4)


def _lineage(accepted: list[SiteResult]) -> dict[str, Any]:
    """Who is behind a model: participants, the sites behind them, regions, their ε."""
    sites: set[str] = set()
    regions: list[str] = []
    epsilon: dict[str, float] = {}
    site_level: dict[str, float] = {}
    for result in accepted:
        behind = result.contributors or (result.site,)
        sites.update(behind)
        p = result.privacy
        region = tuple(behind) != (result.site,)
        if region:
            regions.append(result.site)
        if p is not None and p.enabled:
            (site_level if region else epsilon)[result.site] = p.epsilon
    return {
        "contributors": sorted(r.site for r in accepted),
        "sites": sorted(sites),
        "regions": sorted(regions),
        "epsilon": epsilon,
        "site_level_epsilon": site_level,
    }


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
        contributors=header.contributors if header else (),
    )


def _public_metrics_only(sender: str, header: UpdateHeader) -> UpdateHeader:
    """``header`` with only the metrics in ``PUBLIC_METRICS`` and its federated
    evaluation's noised sums (``eval/``, at most ``MAX_EVAL_METRICS`` of them)."""
    kept = {k: v for k, v in header.metrics.items() if k in PUBLIC_METRICS}
    # a score counts no more examples than the update it came with
    kept |= sum_releases([header.metrics], max_count=header.num_examples)
    dropped = sorted(set(header.metrics) - set(kept))
    if not dropped:
        return header
    log.debug("update of %s: dropped metrics %s (not public)", sender, ", ".join(dropped))
    return replace(header, metrics=kept)


def _fingerprint(settings: EngineSettings, initial: GlobalModel, strategy: Strategy) -> str:
    parts = [settings.federation, str(settings.seed), strategy.name]
    parts += [f"{t.name}:{t.dtype}:{list(t.shape)}" for t in initial.manifest.tensors]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(DEFAULT_CHUNK_SIZE):
            yield chunk
