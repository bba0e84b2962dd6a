"""``fedsov aggregator``: serve a region's sites, take part upstream with their aggregate.

For every task its upstream pushes, the aggregator downloads the upstream's model,
runs one regional round over its own sites with the upstream's deadline, training
plan and round seed, and uploads ``regional model - upstream model`` weighted by
the examples behind it (so FedAvg weights compose across tiers). A round in which
fewer than ``min_sites`` (k) sites contributed exports nothing: the task is
declined with the reason, and the upstream goes on without this region.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from fedsov.aggregator.config import OVER_SELECT_WITH_SITE_DP, AggregatorConfig
from fedsov.audit.trail import AuditTrail, open_audit_trail
from fedsov.codec import EncodedTensors, encode
from fedsov.exceptions import FedsovError
from fedsov.fileio import write_json_atomic
from fedsov.messages import PrivacyReport, TrainTask, UpdateHeader
from fedsov.metrics import NodeMetrics, serve_metrics
from fedsov.modelref import build_model
from fedsov.node.allocator import tune_allocator
from fedsov.node.contributors import ContributorCheck
from fedsov.node.engine import (
    FINISH_GRACE_S,
    TRAINING_SECONDS,
    Admission,
    Engine,
    EngineSettings,
    RoundReport,
    SiteResult,
)
from fedsov.node.evaluation import make_evaluator
from fedsov.node.model import GlobalModel, ModelStore, state_to_numpy
from fedsov.node.state_sqlite import STATE_FILE, SqliteStateStore
from fedsov.node.status import NodeOperator, plan_budget
from fedsov.node.summary import build_summary
from fedsov.participant import (
    ExpectedUpstream,
    JoinCheck,
    Upstream,
    may_join,
    may_send,
    serve_upstream,
)
from fedsov.pki.identity import Role
from fedsov.pki.revoke import open_revocation_list
from fedsov.pki.tls import TlsMaterial, load_tls_material
from fedsov.policy.runtime import (
    PlanAdmission,
    UpdatePolicy,
    load_node_plan,
    require_export_settings,
    require_secure_aggregation,
)
from fedsov.privacy.evaluation import sum_releases
from fedsov.privacy.region import RegionBudget, site_level_report
from fedsov.privacy.site_level import SiteLevelLedger, SiteRound
from fedsov.randomness import secret_seed, warn_if_reproducible
from fedsov.strategy import Strategy, create_strategy, strategy_from_config
from fedsov.transport.client import FederationClient
from fedsov.transport.operator import OperatorService
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

__all__ = ["RegionalAggregator", "dp_noise_seed", "export_header"]

log = logging.getLogger("fedsov.aggregator")

# Part of the upstream's time a regional round leaves for the upload itself.
UPLOAD_MARGIN = 0.15


def dp_noise_seed(config: AggregatorConfig) -> int:
    """DP-FedAvg's noise seed: 128 fresh bits from the OS CSPRNG (a known seed would let
    anyone regenerate and subtract the noise); from the config's seed and the region's
    name only in the insecure reproducible mode."""
    name = int.from_bytes(hashlib.sha256(config.name.encode()).digest()[:8], "big")
    return secret_seed([config.seed, name], bits=128)


def export_header(
    task: TrainTask,
    update: EncodedTensors,
    accepted: list[SiteResult],
    *,
    privacy: PrivacyReport,
    site_dp: bool,
    round_seconds: float | None = None,
) -> UpdateHeader:
    """What a region's export says of itself: nothing unnoised that depends on a site's
    data. Under site-level DP the sites weigh equally (``DPFedAvg.fold_weight``), so the
    example count is the number of contributing sites; without it, the sites' own
    counts, which they publish (record-level DP, replace-one). The sites' federated
    evaluation sums add up, except under site-level DP. So do the sites' training
    seconds (the upstream's compute budget); under site-level DP their sum would tell a
    site's size, so the export claims ``sites x round_seconds`` (the regional round's
    duration, which the upstream times anyway): a bound, never less. The ledger head is
    the participant side's to add when it sends."""
    examples = len(accepted) if site_dp else sum(s.num_examples for s in accepted)
    # The sites' federated evaluation (noised sums, record- or dataset-level DP) adds
    # up; under site-level DP it is not protected as one whole site, so it stays here.
    evaluation = {} if site_dp else sum_releases(s.metrics for s in accepted)
    return UpdateHeader.answering(
        task,
        update,
        num_examples=examples,
        privacy=privacy,
        metrics={"sites": float(len(accepted))}
        | evaluation
        | _training_seconds(accepted, site_dp=site_dp, round_seconds=round_seconds),
        contributors=tuple(sorted({c for s in accepted for c in s.contributors or (s.site,)})),
    )


def _training_seconds(
    accepted: list[SiteResult], *, site_dp: bool, round_seconds: float | None
) -> dict[str, float]:
    """The export's ``training_seconds``: none when no site reported any."""
    if site_dp:
        if round_seconds is None or not accepted:
            return {}
        bound = math.ceil(round(len(accepted) * max(0.0, round_seconds) * 10.0, 6)) / 10.0
        return {TRAINING_SECONDS: bound}
    reported = [s.metrics[TRAINING_SECONDS] for s in accepted if TRAINING_SECONDS in s.metrics]
    return {TRAINING_SECONDS: round(sum(reported), 1)} if reported else {}


def _tls(paths: Any) -> TlsMaterial | None:
    return None if paths is None else load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)


class RegionalAggregator:
    def __init__(
        self,
        config: AggregatorConfig,
        *,
        strategy: Strategy | None = None,
        admission: Admission | None = None,
        plan_sha256: str | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
        budget_epsilon: float | None = None,
    ) -> None:
        """``budget_epsilon``: site-level ε this region may export in all (default: the
        plan's budget for its jurisdiction)."""
        self.config = config
        warn_if_reproducible(config.name)
        if strategy is None:
            strategy = (
                create_strategy("dp-fedavg", settings=config.site_dp, seed=dp_noise_seed(config))
                if config.site_dp
                else strategy_from_config(config.strategy)
            )
        site_dp = strategy.site_level_dp()
        if config.rounds.over_select and site_dp is not None:
            raise FedsovError(f"{config.source}: rounds.over_select {OVER_SELECT_WITH_SITE_DP}")
        self.strategy = strategy
        self.server_tls = _tls(config.server.tls)
        self.upstream_tls = _tls(config.upstream.tls)
        for tls in (self.server_tls, self.upstream_tls):
            if tls is not None and (tls.identity.name, tls.identity.role) != (
                config.name,
                Role.aggregator,
            ):
                raise FedsovError(
                    f"{config.source}: aggregator {config.name!r} needs a certificate for "
                    f"itself with role aggregator, got {tls.identity.name!r} "
                    f"({tls.identity.role})"
                )
        placeholder = state_to_numpy(build_model(config.model.factory, config.model.kwargs))
        r = config.rounds
        plan = None
        if config.plan is not None:
            plan = load_node_plan(config.plan, config.name, federation=config.federation)
        self.revocation = open_revocation_list(
            plan.revocation_list if plan else None, self.server_tls, self.upstream_tls
        )
        self.audit = self._open_audit(plan.sha256 if plan else plan_sha256)
        if plan is not None:
            may_send(plan, config.name, self.audit)  # before any byte leaves
            require_export_settings(
                plan,
                config.name,
                min_sites=r.min_sites,
                site_dp=site_dp is not None,
                source=config.source,
            )
            require_secure_aggregation(plan, config.name, config.secure, source=config.source)
            if budget_epsilon is None:
                jurisdiction = plan.node(config.name).jurisdiction
                budget_epsilon = plan.policy.budgets.jurisdiction_epsilon.get(jurisdiction)
            admission = admission or PlanAdmission(plan, config.name)
            plan_sha256 = plan_sha256 or plan.sha256
            if config.upstream.server_name is None:  # TLS must prove it is the plan's upstream
                config = replace(
                    config,
                    upstream=replace(config.upstream, server_name=plan.node(config.name).upstream),
                )
                self.config = config
        self.plan_sha256 = plan_sha256
        self.on_join: JoinCheck | None = (
            may_join(plan, config.name, self.audit) if plan is not None else None
        )
        self.expect = ExpectedUpstream.of(
            plan=plan, node=config.name, name=config.upstream.upstream_name
        )
        self.metrics = NodeMetrics()
        self.metrics.budget_of = plan_budget(plan)
        self.metrics.watch_audit(self.audit.last_record)
        self.engine = Engine(
            EngineSettings(
                federation=config.federation,
                min_sites=r.min_sites,
                min_updates=r.min_sites,
                sites_per_round=r.sites_per_round,
                over_select=r.over_select,
                max_update_norm=r.max_update_norm,
                max_examples=r.max_examples,
                secure=config.secure,
                round_timeout_s=r.timeout_s,
                start_timeout_s=r.start_timeout_s,
                seed=config.seed,
                plan_sha256=plan_sha256,
            ),
            initial=GlobalModel.from_arrays(placeholder, round=0, parent=None),
            strategy=strategy,
            store=ModelStore(config.output_dir / "models"),
            work_dir=config.output_dir / "work",
            admission=admission,
            on_round=on_round,
            evaluator=make_evaluator(config.model, config.evaluation),
            state=SqliteStateStore(config.output_dir / STATE_FILE),
            audit=self.audit,
            contributors=ContributorCheck(config.federation, plan),
            judge=UpdatePolicy(plan) if plan is not None else None,
            metrics=self.metrics,
        )
        self.operator = NodeOperator(
            self.engine,
            identity=self.server_tls.identity if self.server_tls else None,
            role="aggregator",
            plan=plan,
        )
        self.engine.resume()  # after a crash: the regional rounds it already ran
        self.exported: list[int] = []
        # Site-level releases of this region, persisted: ε composes across restarts.
        identity = self.server_tls.identity if self.server_tls else None
        self.region_budget = RegionBudget(
            SiteLevelLedger(
                config.output_dir / "site-level-ledger.jsonl",
                region=config.name,
                jurisdiction=identity.jurisdiction if identity else "DEV",
                federation=config.federation,
            ),
            budget=budget_epsilon,
        )
        self.declined: dict[int, str] = {}
        self.port: int | None = None
        self.listening = asyncio.Event()
        self.service: FederationService | None = None  # once serving

    def _open_audit(self, plan_sha256: str | None) -> AuditTrail:
        """The region's signed audit trail (both tiers), with its sites' checkpoints."""
        audit = self.config.output_dir / "audit"
        return open_audit_trail(
            audit / "ledger.jsonl",
            self.server_tls,
            plan_sha256=plan_sha256,
            checkpoints=audit / "checkpoints",
        )

    def _client(self) -> FederationClient:
        up = self.config.upstream
        return FederationClient(
            up.address,
            tls=self.upstream_tls,
            server_name=up.server_name,
            insecure_name=self.config.name if self.upstream_tls is None else None,
            plan_sha256=self.plan_sha256,
        )

    async def run(self) -> dict[str, Any]:
        tune_allocator()
        self.config.output_dir.mkdir(parents=True, exist_ok=True)
        self.service = FederationService(
            self.engine,
            insecure=self.server_tls is None,
            max_transfers=self.config.server.max_transfers,
            limits=self.config.server.limits,
            plan_sha256=self.plan_sha256,
            revocation=self.revocation,
            tls=self.server_tls,
            metrics=self.metrics,
        )
        server = await start_server(
            self.service,
            address=self.config.server.address,
            tls=self.server_tls,
            port_file=self.config.server.port_file,
            operator=OperatorService(self.operator, self.service),
        )
        settings = self.config.metrics
        exporter = (
            serve_metrics(self.metrics.registry, settings.address, port_file=settings.port_file)
            if settings is not None
            else None
        )
        self.port = server.port
        self.listening.set()
        started, status = time.time(), "completed"
        try:
            finished = await serve_upstream(
                self._client,
                address=self.config.upstream.address,
                device="cpu",
                backoff=self.config.backoff,
                handle=self._handle,
                audit=self.audit,
                on_join=self.on_join,
                expect=self.expect,
                revocation=self.revocation,
            )
            self.engine.finish(finished.reason)
        except FedsovError as exc:
            status = f"failed: {exc}"
            self.engine.finish(status)
            raise
        except BaseException:
            # Stopped (SIGTERM): the sites are not told the federation finished; they
            # reconnect to the restarted aggregator, which resumes from its state.
            status = "stopped"
            raise
        finally:
            await self.engine.linger(FINISH_GRACE_S)  # every site hears Finished
            await server.stop(grace=2.0)
            summary = self.summary(status, time.time() - started)
            write_json_atomic(self.config.output_dir / "summary.json", summary)
            self.engine.state.close()
            self.audit.close()
            if exporter is not None:
                exporter.close()
        return summary

    def summary(self, status: str, seconds: float) -> dict[str, Any]:
        model = self.engine.model
        summary = build_summary(
            federation=self.config.federation,
            reports=self.engine.reports,
            model_sha256=model.sha256,
            model_file=str(self.engine.store.directory / f"round-{model.round:04d}.safetensors"),
            seconds=seconds,
            status=status,
        )
        summary |= {
            "node": self.config.name,
            "role": "aggregator",
            "exported_rounds": self.exported,
            "site_level_epsilon": self.site_level_epsilon(),
            "site_level_delta": dp.delta if (dp := self.strategy.site_level_dp()) else None,
            "declined_rounds": {str(k): v for k, v in self.declined.items()},
            "server": self.service.limits_report() if self.service else None,
        }
        return summary

    async def _wait_for_first_sites(self, deadline: float) -> None:
        """``rounds.first_round_sites`` connected, or as many as join in time."""
        r = self.config.rounds
        wait = min(r.start_timeout_s, (deadline - time.time()) / 2)
        try:
            await self.engine.wait_for_sites(r.first_round_sites, max(0.0, wait))
        except FedsovError as exc:
            log.warning("the first round runs without all its sites: %s", exc)

    async def _handle(self, upstream: Upstream, task: TrainTask) -> None:
        if task.secure is not None:
            why = (
                "the upstream asks for secure aggregation, which only sites take part in; "
                "a regional aggregator secures its own region ([secure_aggregation] here)"
            )
            await self._decline(upstream, task, "secure-aggregation-unsupported", why)
            return
        payload = await upstream.download(task)
        base = GlobalModel(
            round=task.round,
            encoded=EncodedTensors(task.manifest, payload, task.model_sha256),
            parent=None,
        )
        remaining = task.deadline_unix - time.time()
        deadline = time.time() + min(self.config.rounds.timeout_s, remaining * (1 - UPLOAD_MARGIN))
        # Ran already (before a restart, or for an earlier attempt upstream): export the
        # same aggregate again; the upstream counts it once, and no new ε is spent.
        report = self.engine.completed(task.round, base.sha256)
        if report is None and not self.engine.reports:
            await self._wait_for_first_sites(deadline)
        try:
            if report is None:
                report = await self.engine.run_round(
                    task.round,
                    base=base,
                    deadline=deadline,
                    training=task.plan,
                    round_seed=task.round_seed,
                )
        except FedsovError as exc:
            await self._decline(upstream, task, "below-k", str(exc))
            return
        accepted = [s for s in report.sites if s.status == "accepted"]
        if report.failure:
            await self._decline(upstream, task, "no-model", report.failure)
            return
        if not report.completed:
            await self._decline(
                upstream,
                task,
                "below-k",
                f"only {len(accepted)} of the {self.config.rounds.min_sites} sites needed "
                f"contributed in round {task.round}; nothing is exported",
            )
            return
        site_dp = self.strategy.site_level_dp()
        if site_dp is not None:  # charged, on disk, before the export leaves
            release = self._release(report, site_dp.noise_multiplier)
            refusal = self.region_budget.charge(
                round=task.round,
                base_sha256=base.sha256,
                noise_multiplier=release.noise_multiplier,
                selected=release.sites,
                population=release.population,
                delta=site_dp.delta,
            )
            if refusal is not None:
                await self._decline(upstream, task, "budget-exhausted", refusal)
                return
        new = self.engine.model.arrays()
        update = encode({k: new[k] - v for k, v in base.arrays().items()})
        header = export_header(
            task,
            update,
            accepted,
            privacy=self.privacy_report(),
            site_dp=site_dp is not None,
            round_seconds=report.seconds,
        )
        if not await upstream.send(header, update.payload):
            return
        self.exported.append(task.round)
        log.info("round %d: exported the aggregate of %d sites", task.round, len(accepted))

    def _release(self, report: RoundReport, noise_multiplier: float) -> SiteRound:
        """The round's site-level release: m sites asked of the n connected when it
        opened (fixed-size sampling when sites_per_round is set; m = n otherwise).

        A report stored without its population (an older fedsov) is accounted with
        m = n: no amplification claimed.
        """
        selected = len(report.sites)
        population = max(selected, len(report.population)) if report.population else selected
        return SiteRound(noise_multiplier, selected, population)

    def site_level_epsilon(self) -> float | None:
        """Site-level ε of everything this region exported so far (None without DP);
        see ``fedsov.privacy.region`` for how it is accounted."""
        site_dp = self.strategy.site_level_dp()
        return None if site_dp is None else self.region_budget.epsilon(site_dp.delta)

    def privacy_report(self) -> PrivacyReport:
        """Site-level DP of what this region exports (none with plain FedAvg)."""
        site_dp = self.strategy.site_level_dp()
        epsilon = self.site_level_epsilon()
        if site_dp is None or epsilon is None or not math.isfinite(epsilon):
            return PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)  # no noise: no DP
        return site_level_report(
            epsilon,
            delta=site_dp.delta,
            noise_multiplier=site_dp.noise_multiplier,
            clip=site_dp.clip,
            rounds=site_dp.rounds,
        )

    async def _decline(self, upstream: Upstream, task: TrainTask, code: str, why: str) -> None:
        self.declined[task.round] = f"{code}: {why}"
        log.warning("round %d: declining the task: %s", task.round, why)
        await upstream.decline(task, code=code, reason=why)
