"""``fedsov site``: dial out, hold a task subscription, train, upload deltas.

The trainer is fedsov's DP-SGD (:class:`~fedsov.site.trainer.DPTrainer`) or a Flower
app (:class:`~fedsov.site.flower_trainer.FlowerTrainer`, ``[trainer] kind = "flower"``),
both behind :class:`LocalTrainer`.

Importing it is light: torch and Opacus load when a ``SiteAgent`` is made, which
checks that the data fits the model before it dials anyone, and trains
(docs/architecture.md, "Light imports").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import grpc
import numpy as np

from fedsov.audit.trail import AuditTrail, open_audit_trail
from fedsov.codec import EncodedTensors, decode, encode
from fedsov.config import TrainingPlan
from fedsov.exceptions import CodecError, ConfigError, FedsovError, TrainingError
from fedsov.messages import (
    Finished,
    PrivacyLevel,
    PrivacyReport,
    SecAggParams,
    SecAggReply,
    SecAggRequest,
    SecAggStage,
    TrainTask,
    UpdateHeader,
)
from fedsov.metrics import SiteMetrics, serve_metrics
from fedsov.modelref import build_model, load_weights
from fedsov.participant import (
    FATAL,
    ExpectedUpstream,
    JoinCheck,
    Upstream,
    may_join,
    may_send,
    serve_upstream,
)
from fedsov.pki.revoke import open_revocation_list
from fedsov.pki.tls import TlsMaterial, load_tls_material
from fedsov.policy.runtime import load_node_plan, require_update_allowed
from fedsov.privacy.accountant import MechanismStep
from fedsov.privacy.evaluation import EvalOutcome, release
from fedsov.privacy.ledger import DATASET_UNIT, PRIVACY_UNIT, PrivacyLedger
from fedsov.randomness import secret_seed, warn_if_reproducible
from fedsov.secagg import SiteRound
from fedsov.site.config import SiteConfig
from fedsov.site.data import Dataset, load_local_data
from fedsov.transport.client import FederationClient

if TYPE_CHECKING:
    import torch

    from fedsov.site.trainer import TrainResult

__all__ = ["LocalTrainer", "SiteAgent", "SiteOutcome"]

log = logging.getLogger("fedsov.site")


class LocalTrainer(Protocol):
    """What trains a site's rounds and accounts every release it made."""

    device: str
    train: TrainingPlan  # replaced by each task's plan

    def planned_step(self) -> MechanismStep:
        """The DP release the next round will make (for the budget check)."""

    def epsilon_after(self, extra: Sequence[MechanismStep]) -> float:
        """ε if ``extra`` were released on top of everything so far."""

    def train_round(
        self, model: torch.nn.Module, *, round_seed: int, server_round: int
    ) -> TrainResult:
        """Train ``model`` (holding the global weights); a TrainingError releases nothing."""

    def evaluate_global(self, model: torch.nn.Module, *, server_round: int) -> EvalOutcome:
        """Score ``model`` (the global weights, left as they are) on the local data."""

    def eval_step(self) -> MechanismStep:
        """The DP release a federated evaluation makes."""

    def add_release(self, step: MechanismStep) -> None:
        """Count ``step``, released beside training, in the trainer's ε."""


@dataclass(frozen=True)
class _Unsent:
    """An update trained and accounted for, whose upload has not been acknowledged."""

    round: int
    model_sha256: str
    round_seed: int
    header: UpdateHeader
    payload: bytes | bytearray

    def answers(self, task: TrainTask) -> bool:
        return (self.round, self.model_sha256, self.round_seed) == (
            task.round,
            task.model_sha256,
            task.round_seed,
        )


@dataclass(frozen=True)
class SiteOutcome:
    rounds_trained: int
    epsilon: float
    finished: Finished | None


class SiteAgent:
    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.tls: TlsMaterial | None = None
        if config.upstream.tls is not None:
            paths = config.upstream.tls
            self.tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
            if self.tls.identity.name != config.name:
                raise FedsovError(
                    f"{config.source}: site.name is {config.name!r} but the certificate "
                    f"{paths.cert} is for {self.tls.identity.name!r}"
                )
        self.plan_sha256: str | None = None
        self.federation = self.tls.identity.federation if self.tls else "dev"
        self.budget = config.budget_epsilon
        # With a plan, TLS must prove the server is the plan's upstream: its certificate
        # has to name that node (sign server CSRs with --host <node name>).
        self.server_name = config.upstream.server_name
        plan = load_node_plan(config.plan, config.name) if config.plan is not None else None
        # Stops a site whose own certificate is revoked; kept to check its upstream's.
        self.revocation = open_revocation_list(plan.revocation_list if plan else None, self.tls)
        # The site's signed audit trail; a null one without TLS (no key to sign with).
        self.audit: AuditTrail = open_audit_trail(
            config.audit_ledger, self.tls, plan_sha256=plan.sha256 if plan else None
        )
        # Under TLS the upstream proves its certificate at each join; it must be this one.
        self.expect = ExpectedUpstream.of(
            plan=plan, node=config.name, name=config.upstream.upstream_name
        )
        self.on_join: JoinCheck | None = None
        if plan is not None:
            may_send(plan, config.name, self.audit)  # before any byte leaves
            # What its own trainer provides, whatever the plan entry says: DP-SGD if enabled,
            # by fedsov's trainer or a Flower app through make_private (dp = "sample").
            sample_dp = config.privacy.enabled and (
                not config.trainer.flower or config.trainer.dp == "sample"
            )
            require_update_allowed(plan, config.name, sample_dp=sample_dp)
            self.on_join = may_join(plan, config.name, self.audit)  # before any task
            self.plan_sha256 = plan.sha256
            self.server_name = self.server_name or plan.node(config.name).upstream
            if self.budget is None:
                self.budget = plan.policy.budgets.site_epsilon
        warn_if_reproducible(config.name)
        # "auto" until the first task: choosing cuda or cpu imports torch.
        self.device = config.device or "auto"
        # None: a Flower app that loads its own data; its ledger key is the app's.
        self.data: Dataset | None = load_local_data(config.data) if config.data else None
        if self.data is not None:
            self._check_data_fits(self.data)  # before joining: a misfit fails every round
        self.dataset_id = (  # the ledger follows the data
            self.data.fingerprint() if self.data is not None else config.trainer.fingerprint()
        )
        self.ledger = PrivacyLedger(
            config.ledger or config.source.parent / f"{config.name}.privacy-ledger.jsonl",
            site=config.name,
            jurisdiction=self.tls.identity.jurisdiction if self.tls else "DEV",
        )
        self._trainer: LocalTrainer | None = None
        if config.trainer.flower:  # import the app now: a bad reference stops the site here
            self._trainer = self._make_trainer(TrainingPlan())
            self.device = self._trainer.device
        self._models: dict[str, bytearray] = {}  # downloaded and hash-checked
        self._partial: dict[str, bytearray] = {}  # a download cut off with its connection
        self._unsent: _Unsent | None = None
        self.rounds_trained = 0
        self.epsilon = 0.0
        self.metrics = SiteMetrics()
        self.metrics.spent(0.0, self.budget)

    def _client(self) -> FederationClient:
        return FederationClient(
            self.config.upstream.address,
            tls=self.tls,
            server_name=self.server_name,
            insecure_name=self.config.name if self.tls is None else None,
            plan_sha256=self.plan_sha256,
        )

    async def run(self) -> SiteOutcome:
        """Serve tasks until the upstream says the federation finished."""
        log.info(
            "site %s: %s, training on %s",
            self.config.name,
            f"{len(self.data)} local examples" if self.data else self.config.trainer.app,
            self.device,
        )
        settings = self.config.metrics
        exporter = (
            serve_metrics(self.metrics.registry, settings.address, port_file=settings.port_file)
            if settings is not None
            else None
        )
        try:
            finished = await serve_upstream(
                self._client,
                address=self.config.upstream.address,
                device=self.device,
                backoff=self.config.backoff,
                handle=self._handle,
                audit=self.audit,
                on_join=self.on_join,
                expect=self.expect,
                revocation=self.revocation,
            )
        finally:
            self.audit.close()  # a last checkpoint
            if exporter is not None:
                exporter.close()
        return SiteOutcome(self.rounds_trained, self.epsilon, finished)

    def _trainer_for(self, task: TrainTask) -> LocalTrainer:
        train = TrainingPlan(
            local_epochs=task.plan.local_epochs,
            batch_size=task.plan.batch_size,
            learning_rate=task.plan.learning_rate,
            momentum=task.plan.momentum,
            proximal_mu=task.plan.proximal_mu,
        )
        if self._trainer is None:
            self._trainer = self._make_trainer(train)  # torch and Opacus: at the first task
            self.device = self._trainer.device
        else:
            self._trainer.train = train
        return self._trainer

    def _make_trainer(self, train: TrainingPlan) -> LocalTrainer:
        config = self.config
        prior = self.ledger.history(self.dataset_id)
        if config.trainer.flower:
            from fedsov.site.flower_trainer import FlowerTrainer

            return FlowerTrainer(
                config=config.trainer,
                train=train,
                privacy=config.privacy,
                node_name=config.name,
                base=config.source.parent,
                seed=config.seed,
                prior=prior,
                num_examples=len(self.data) if self.data is not None else None,
                device=config.device,
            )
        from fedsov.site.trainer import DPTrainer

        assert self.data is not None  # SiteFile: [data] unless the trainer is a Flower app
        return DPTrainer(
            data=self.data,
            train=train,
            privacy=config.privacy,
            device=config.device,
            seed=config.seed,
            prior=prior,
        )

    def _check_data_fits(self, data: Dataset) -> None:
        """A DataError unless the local data fits the model (a misfit fails every round)."""
        from fedsov.site.fit import check_data_fits

        config = self.config
        spec = config.data
        assert spec is not None
        check_data_fits(
            build_model(config.model.factory, config.model.kwargs),
            data,
            source=str(spec.path or f"data loader {spec.loader}"),
            model_ref=config.model.factory,
        )

    async def _decline(self, upstream: Upstream, task: TrainTask, code: str, reason: str) -> None:
        """Refuse ``task``; the upstream records the code and reason in its round report."""
        log.warning("round %d: declining: %s", task.round, reason)
        self.metrics.declined(code)
        await upstream.decline(task, code=code, reason=reason)

    async def _within_budget(self, upstream: Upstream, task: TrainTask) -> bool:
        """Refuse the task (the upstream records why) if it would cross the site's budget."""
        trainer = self._trainer_for(task)
        privacy = self.config.privacy
        if self.budget is None or not privacy.enabled:
            return True
        evaluation = [trainer.eval_step()] if task.plan.evaluate else []
        after = trainer.epsilon_after([trainer.planned_step(), *evaluation])
        if after <= self.budget:
            return True
        reason = (
            f"round {task.round} would take ε to {after:.3f} > budget {self.budget:g} "
            f"(δ={privacy.delta:g}, {privacy.accountant}); this site trains no more"
        )
        await self._decline(upstream, task, "budget-exhausted", reason)
        return False

    async def _send(self, upstream: Upstream, unsent: _Unsent, task: TrainTask) -> bool:
        """Upload; kept for a retry only while the connection, not the update, failed."""
        self._unsent = unsent
        header = replace(unsent.header, task_id=task.task_id)
        sent = await upstream.send(header, unsent.payload)  # raises if cut off
        self._unsent = None
        if sent:
            self.metrics.sent_bytes.inc(len(unsent.payload))
        return sent

    async def _handle(self, upstream: Upstream, task: TrainTask) -> None:
        started = time.monotonic()
        unsent = self._unsent
        if unsent is not None and unsent.answers(task):
            # The same round over the same model, pushed again after a cut connection or
            # an upstream restart: send the update already trained. Its ε is in the
            # ledger; training again would spend it twice.
            log.info("round %d: sending the update trained before the interruption", task.round)
            await self._send(upstream, unsent, task)
            return
        self._unsent = None
        ready, secure = await self._ready(upstream, task)
        if not ready:
            return
        payload = await self._model(upstream, task)
        global_weights = decode(task.manifest, payload)  # its hash was checked on arrival
        model = build_model(self.config.model.factory, self.config.model.kwargs)
        load_weights(model, global_weights)
        trainer = self._trainer_for(task)
        evaluation = await self._evaluate(trainer, model, task)  # the model as received
        trained_from = time.monotonic()
        try:
            result = await asyncio.to_thread(
                trainer.train_round,
                model,
                round_seed=task.round_seed ^ self.config.seed,
                server_round=task.round,
            )
        except TrainingError as exc:  # nothing was released: no ε is spent
            await self._decline(upstream, task, "training-failed", str(exc))
            return
        privacy = self.config.privacy
        released = None  # released with the update only: nothing is spent if it is not sent
        if evaluation is not None:
            released = self._release(evaluation, trainer, task, result.num_examples)
        eval_step = trainer.eval_step() if released is not None and privacy.enabled else None
        epsilon = trainer.epsilon_after([eval_step]) if eval_step else result.epsilon
        if privacy.enabled and self.budget is not None and epsilon > self.budget:
            # A Flower app's DP-SGD steps are known only now; nothing leaves.
            reason = (
                f"round {task.round} took ε to {epsilon:.3f} > budget {self.budget:g} "
                f"(δ={privacy.delta:g}, {privacy.accountant}); not sent, this site trains no more"
            )
            await self._decline(upstream, task, "budget-exhausted", reason)
            return
        if result.metrics:  # data-derived and unnoised: logged here, never sent
            log.info("round %d: app metrics (kept here): %s", task.round, dict(result.metrics))
        delta = _parameter_delta(model, result.weights, global_weights)
        update = await self._encode(delta, task, secure, result.num_examples)
        header = UpdateHeader.answering(
            task,
            update,
            num_examples=result.num_examples,
            privacy=PrivacyReport(
                enabled=privacy.enabled,
                epsilon=epsilon if privacy.enabled else 0.0,
                delta=result.delta,
                noise_multiplier=result.noise_multiplier,
                max_grad_norm=result.max_grad_norm,
                sample_rate=result.sample_rate,
                steps=result.steps,
                total_steps=result.total_steps,
                accountant=privacy.accountant if privacy.enabled else "",
                level=result.level,
            ),
            # only the federated evaluation's noised sums and the public training time:
            # the app's training metrics and loss depend on the data and carry no
            # noise: kept here
            metrics=(released or {}) | {TRAINING_SECONDS: training_seconds(result.seconds)},
            contributors=(self.config.name,),
        )
        if privacy.enabled:  # on disk before the update leaves
            releases = [
                (
                    MechanismStep(result.noise_multiplier, result.sample_rate, result.steps),
                    DATASET_UNIT if result.level is PrivacyLevel.UPDATE else PRIVACY_UNIT,
                )
            ]
            if eval_step is not None and evaluation is not None:
                releases.append((eval_step, evaluation.unit))
            self._record(task, releases, delta=result.delta)
            if eval_step is not None:
                trainer.add_release(eval_step)
        self.rounds_trained += 1
        self.epsilon = epsilon
        self.metrics.trained(
            seconds=time.monotonic() - trained_from, epsilon=epsilon, budget=self.budget
        )
        unsent = _Unsent(task.round, task.model_sha256, task.round_seed, header, update.payload)
        if not await self._send(upstream, unsent, task):
            return
        await self._secure_reveal(upstream, task, secure)
        log.info(
            "round %d: %d examples, %d steps, loss %.4f, ε=%.3f (δ=%g), %.1f s",
            task.round,
            result.num_examples,
            result.steps,
            result.train_loss,
            epsilon,
            result.delta,
            time.monotonic() - started,
        )

    async def _ready(self, upstream: Upstream, task: TrainTask) -> tuple[bool, SiteRound | None]:
        """Whether to train for ``task`` (within budget; in a secure round, keys and
        shares exchanged first, so a failed exchange costs no ε), and its secure round."""
        if not await self._within_budget(upstream, task):
            return False, None
        if task.secure is None:
            return True, None
        secure = await self._secure_keys(upstream, task, task.secure)
        return secure is not None, secure

    async def _encode(
        self,
        delta: dict[str, np.ndarray],
        task: TrainTask,
        secure: SiteRound | None,
        examples: int,
    ) -> EncodedTensors:
        """The update's payload: plain, or clipped, weighted, quantized and masked."""
        if secure is None:
            return encode(delta)
        weight = examples if secure.params.weighted else 1
        return await asyncio.to_thread(secure.mask, delta, task.manifest, weight=weight)

    async def _secure_step(
        self, upstream: Upstream, task: TrainTask, request: SecAggRequest, timeout: float
    ) -> SecAggReply | None:
        """One step of a secure round; None (logged) when the upstream ends the round."""
        try:
            return await upstream.client.secure_step(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in FATAL or exc.code() is grpc.StatusCode.UNAVAILABLE:
                raise
            log.warning(
                "round %d: secure aggregation, %s step: %s: %s",
                task.round,
                request.stage,
                exc.code().name,
                exc.details(),
            )
            return None

    async def _secure_keys(
        self, upstream: Upstream, task: TrainTask, params: SecAggParams
    ) -> SiteRound | None:
        """Exchange keys and sealed shares with the round's other sites (via the upstream,
        which sees only public keys and ciphertext); None if the round went on without us."""
        secure = SiteRound(self.config.name, params, round=task.round)
        wait = 2 * params.stage_timeout_s + 30.0
        reply = await self._secure_step(
            upstream,
            task,
            SecAggRequest(task.task_id, task.round, SecAggStage.ADVERTISE, keys=secure.keys()),
            wait,
        )
        if reply is None:
            return None
        try:
            shares = secure.share(reply.neighbours)
        except FedsovError as exc:
            log.warning("round %d: secure aggregation refused: %s", task.round, exc)
            return None
        reply = await self._secure_step(
            upstream,
            task,
            SecAggRequest(task.task_id, task.round, SecAggStage.SHARE, shares=shares),
            wait,
        )
        if reply is None:
            return None
        try:
            secure.accept_shares(reply.shares)
        except FedsovError as exc:
            log.warning("round %d: secure aggregation refused: %s", task.round, exc)
            return None
        return secure

    async def _secure_reveal(
        self, upstream: Upstream, task: TrainTask, secure: SiteRound | None
    ) -> None:
        """After the masked upload: the shares the upstream needs to remove the masks of
        the round's survivors and of those that dropped, never both for one site."""
        if secure is None:
            return
        wait = max(0.0, task.deadline_unix - time.time()) + 3 * secure.params.stage_timeout_s
        reply = await self._secure_step(
            upstream, task, SecAggRequest(task.task_id, task.round, SecAggStage.UNMASK), wait
        )
        if reply is None or self.config.name not in reply.survivors:
            return
        try:
            reveals = secure.reveal(reply.survivors, reply.dropped)
        except FedsovError as exc:
            log.warning("round %d: secure aggregation: no shares revealed: %s", task.round, exc)
            return
        await self._secure_step(
            upstream,
            task,
            SecAggRequest(task.task_id, task.round, SecAggStage.REVEAL, reveals=reveals),
            secure.params.stage_timeout_s + 30.0,
        )

    async def _model(self, upstream: Upstream, task: TrainTask) -> bytearray:
        """The task's model: kept from an earlier round, or downloaded (resumed after a
        cut connection)."""
        payload = self._models.get(task.model_sha256)
        if payload is None:
            partial = self._partial.setdefault(task.model_sha256, bytearray())
            self._partial = {task.model_sha256: partial}  # older models are not resumed
            try:
                payload = await upstream.download(task, buffer=partial)
            except CodecError:
                self._partial = {}  # bytes that do not add up: start again next time
                raise
            self._partial = {}
            self._models = {task.model_sha256: payload}
            self.metrics.received_bytes.inc(len(payload))
        return payload

    def _record(
        self, task: TrainTask, releases: list[tuple[MechanismStep, str]], *, delta: float
    ) -> None:
        """Each of the round's releases (step, unit) in the privacy ledger, on disk."""
        for step, unit in releases:
            self.ledger.record(
                dataset=self.dataset_id,
                federation=self.federation,
                round=task.round,
                task_id=task.task_id,
                step=step,
                delta=delta,
                accountant=self.config.privacy.accountant,
                unit=unit,
            )

    async def _evaluate(
        self, trainer: LocalTrainer, model: torch.nn.Module, task: TrainTask
    ) -> EvalOutcome | None:
        """With ``[training] evaluate``: the received model's scores on the local data,
        before training changes it; None if there are none."""
        if not task.plan.evaluate:
            return None
        try:
            return await asyncio.to_thread(trainer.evaluate_global, model, server_round=task.round)
        except TrainingError as exc:
            log.warning("round %d: no federated evaluation: %s", task.round, exc)
            return None

    def _release(
        self, outcome: EvalOutcome, trainer: LocalTrainer, task: TrainTask, examples: int
    ) -> dict[str, float] | None:
        """``outcome`` as the header's noised sums (fedsov.privacy.evaluation), weighed by
        the update's public example count where the scores are per dataset (an app's);
        None if it cannot be released."""
        if outcome.unit == DATASET_UNIT:
            outcome = replace(outcome, examples=examples)
        privacy = self.config.privacy
        noise = trainer.eval_step().noise_multiplier if privacy.enabled else None
        seed = secret_seed([self.config.seed, task.round_seed, 0xE7A1])
        try:
            return release(outcome, noise_multiplier=noise, seed=seed)
        except ConfigError as exc:
            log.warning("round %d: no federated evaluation: %s", task.round, exc)
            return None


TRAINING_SECONDS = "training_seconds"  # as fedsov.node.engine (which a site does not import)


def training_seconds(seconds: float) -> float:
    """A round's local training time as the update reports it: rounded up to 0.1 s (any
    training counts; finer timing tells a compute budget nothing). docs/privacy.md says
    why it is public."""
    return math.ceil(round(max(0.0, seconds) * 10.0, 6)) / 10.0


def _parameter_delta(
    model: torch.nn.Module,
    trained: dict[str, np.ndarray],
    base: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """``trained - base`` for the model's parameters; zero for buffers.

    DP-SGD noises gradients, i.e. parameters only: a buffer (a running statistic, a
    counter) is computed from the data without noise, so its change never leaves.
    """
    params = {name for name, _ in model.named_parameters()}
    return {
        k: (trained[k] - v).astype(v.dtype, copy=False) if k in params else np.zeros_like(v)
        for k, v in base.items()
    }
