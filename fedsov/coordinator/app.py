"""``fedsov coordinator``: wire config, engine and gRPC server, run, write the summary."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from fedsov.audit.trail import AuditTrail, open_audit_trail
from fedsov.config import MetricsSettings
from fedsov.coordinator.config import CoordinatorConfig
from fedsov.coordinator.guardrails import Trip, signal_stop
from fedsov.coordinator.operator import CoordinatorOperator
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.exceptions import FedsovError
from fedsov.fileio import write_atomic, write_json_atomic
from fedsov.metrics import MetricsServer, NodeMetrics, serve_metrics
from fedsov.modelref import build_model
from fedsov.node.allocator import tune_allocator
from fedsov.node.contributors import ContributorCheck
from fedsov.node.engine import FINISH_GRACE_S, EngineSettings, RoundReport
from fedsov.node.evaluation import make_evaluator
from fedsov.node.model import GlobalModel, ModelStore, state_to_numpy
from fedsov.node.state import StateStore
from fedsov.node.state_sqlite import STATE_FILE, SqliteStateStore
from fedsov.node.status import plan_budget
from fedsov.node.summary import build_summary
from fedsov.pki.revoke import RevocationList, open_revocation_list
from fedsov.pki.tls import TlsMaterial, load_tls_material
from fedsov.policy.plan import Plan
from fedsov.policy.runtime import (
    PlanAdmission,
    UpdatePolicy,
    load_node_plan,
    require_secure_aggregation,
)
from fedsov.randomness import warn_if_reproducible
from fedsov.signals import Stopped, until_signalled
from fedsov.strategy import strategy_from_config
from fedsov.transport.operator import OperatorService
from fedsov.transport.server import RunningServer, start_server
from fedsov.transport.service import FederationService

__all__ = ["Coordinator"]

log = logging.getLogger("fedsov.coordinator")


class Coordinator:
    """The global aggregator: a node driven by its own schedule of rounds."""

    def __init__(
        self,
        config: CoordinatorConfig,
        *,
        on_round: Callable[[RoundReport], None] | None = None,
    ) -> None:
        self.config = config
        self.on_round = on_round

    async def run(self) -> dict[str, object]:
        """Serve until every round ran (or the federation stalls); return the summary."""
        config, on_round = self.config, self.on_round
        tune_allocator()
        out = config.output_dir
        out.mkdir(parents=True, exist_ok=True)
        tls = (
            None
            if config.server.tls is None
            else load_tls_material(
                cert=config.server.tls.cert, key=config.server.tls.key, ca=config.server.tls.ca
            )
        )
        warn_if_reproducible(tls.identity.name if tls is not None else "coordinator")
        initial = GlobalModel.from_arrays(
            state_to_numpy(
                build_model(config.model.factory, config.model.kwargs, seed=config.seed)
            ),
            round=0,
            parent=None,
        )
        store = ModelStore(out / "models")
        state = SqliteStateStore(out / STATE_FILE)
        rounds_log = out / "rounds.jsonl"
        # One line per closed round attempt, rebuilt from the state store on a restart.
        write_atomic(rounds_log, "".join(_line(r) for r in state.reports()).encode())

        plan, admission = _plan(config, tls)
        revocation = open_revocation_list(plan.revocation_list if plan else None, tls)
        audit = _audit_trail(out, tls, plan.sha256 if plan else None)
        publish = _model_publisher(audit, state)
        metrics = _node_metrics(plan, audit)
        for earlier in state.reports():  # a restart may have cut the last one off
            publish(RoundReport.from_json(earlier))

        def record(report: RoundReport) -> None:
            with open(rounds_log, "a", encoding="utf-8") as f:
                f.write(_line(report.to_json()))
            publish(report)
            if on_round is not None:
                on_round(report)

        engine = ScheduledEngine(
            EngineSettings(
                federation=config.federation,
                min_sites=config.rounds.min_sites,
                min_updates=config.rounds.min_updates,
                sites_per_round=config.rounds.sites_per_round,
                round_timeout_s=config.rounds.timeout_s,
                start_timeout_s=config.rounds.start_timeout_s,
                over_select=config.rounds.over_select,
                max_update_norm=config.rounds.max_update_norm,
                max_examples=config.rounds.max_examples,
                plan_sha256=plan.sha256 if plan else None,
                seed=config.seed,
                heartbeat_s=config.heartbeat_s,
                allowed_sites=config.allowed_sites,
                secure=config.secure,
            ),
            Schedule(
                num_rounds=config.rounds.num_rounds,
                max_attempts=config.rounds.max_attempts,
                training=config.training,
            ),
            initial=initial,
            strategy=strategy_from_config(config.strategy),
            store=store,
            work_dir=out / "work",
            evaluator=make_evaluator(config.model, config.evaluation),
            admission=admission,
            on_round=record,
            state=state,
            audit=audit,
            contributors=ContributorCheck(config.federation, plan),
            judge=UpdatePolicy(plan) if plan is not None else None,
            metrics=metrics,
            guardrails=config.guardrails or (plan.guardrails if plan else None),
            jurisdictions={n.name: n.jurisdiction for n in plan.nodes} if plan else None,
        )
        await _prepare(engine, state, audit)  # refuse a foreign state before listening
        service, server = await _listen(config, engine, tls, plan, revocation, metrics)
        exporter = _serve_metrics(config.metrics, metrics)
        started = time.time()
        status, signalled = "completed", ""
        try:
            await until_signalled(engine.run())
        except Stopped as exc:  # the open round stays stored: a restart re-opens it
            status, signalled = str(exc), exc.signal_name
            log.warning("%s: state is committed; start again with the same config to resume", exc)
        except FedsovError as exc:
            status = f"failed: {exc}"
            log.error("%s", exc)
        finally:
            await engine.linger(FINISH_GRACE_S)  # every site hears Finished, even one reconnecting
            await server.stop(grace=2.0)
            state.close()
            audit.close()
            if exporter is not None:
                exporter.close()
        summary = build_summary(
            federation=config.federation,
            reports=engine.reports,
            model_sha256=engine.model.sha256,
            model_file=str(store.directory / f"round-{engine.model.round:04d}.safetensors"),
            seconds=time.time() - started,
            status=engine.stop.status if engine.stop is not None else status,
        )
        # a guardrail or an operator ended it early, or a signal did: summary["stop"]
        summary |= {"server": service.limits_report()} | _stop(engine.stop, signalled)
        write_json_atomic(out / "summary.json", summary)
        return summary


def _stop(trip: Trip | None, signal_name: str) -> dict[str, object]:
    """``summary["stop"]``: why the federation ended before its last round, and the exit
    status that says so (none when it completed or failed)."""
    if trip is not None:
        return {"stop": trip.to_json()}
    return {"stop": signal_stop(signal_name)} if signal_name else {}


def _plan(
    config: CoordinatorConfig, tls: TlsMaterial | None
) -> tuple[Plan | None, PlanAdmission | None]:
    """The plan this coordinator enforces, and who it admits by it (none without a plan)."""
    if config.plan is None:
        return None, None
    me = tls.identity.name if tls is not None else None  # None: the plan's global node
    plan = load_node_plan(config.plan, me, federation=config.federation)
    log.info("enforcing plan %s (%s)", plan.sha256[:16], config.plan)
    name = me or plan.global_node.name
    require_secure_aggregation(plan, name, config.secure, source=config.source)
    return plan, PlanAdmission(plan, name)


async def _listen(
    config: CoordinatorConfig,
    engine: ScheduledEngine,
    tls: TlsMaterial | None,
    plan: Plan | None,
    revocation: RevocationList | None,
    metrics: NodeMetrics,
) -> tuple[FederationService, RunningServer]:
    """Serve the federation, and the Operator service beside it, on [server]."""
    service = FederationService(
        engine,
        insecure=tls is None,
        max_transfers=config.server.max_transfers,
        limits=config.server.limits,
        plan_sha256=plan.sha256 if plan else None,
        tls=tls,
        revocation=revocation,
        metrics=metrics,
    )
    operator = CoordinatorOperator(
        engine,
        identity=tls.identity if tls is not None else None,
        role="coordinator",
        plan=plan,
        rounds_total=config.rounds.num_rounds,
    )
    server = await start_server(
        service,
        address=config.server.address,
        tls=tls,
        port_file=config.server.port_file,
        operator=OperatorService(operator, service),
    )
    return service, server


def _node_metrics(plan: Plan | None, audit: AuditTrail) -> NodeMetrics:
    """The metrics this node moves: with its participants' budgets and its ledger head."""
    metrics = NodeMetrics()
    metrics.budget_of = plan_budget(plan)
    metrics.watch_audit(audit.last_record)
    return metrics


def _serve_metrics(settings: MetricsSettings | None, metrics: NodeMetrics) -> MetricsServer | None:
    """``/metrics`` when the config has a [metrics] table (off by default)."""
    if settings is None:
        return None
    return serve_metrics(metrics.registry, settings.address, port_file=settings.port_file)


async def _prepare(engine: ScheduledEngine, state: StateStore, audit: AuditTrail) -> None:
    try:
        await engine.prepare()
    except FedsovError:
        state.close()
        audit.close()
        raise


def _audit_trail(out: Path, tls: TlsMaterial | None, plan_sha256: str | None) -> AuditTrail:
    """The coordinator's signed audit trail, with its participants' checkpoints."""
    return open_audit_trail(
        out / "audit" / "ledger.jsonl",
        tls,
        plan_sha256=plan_sha256,
        checkpoints=out / "audit" / "checkpoints",
    )


def _model_publisher(audit: AuditTrail, state: StateStore) -> Callable[[RoundReport], None]:
    def publish(report: RoundReport) -> None:
        """A new global model version in the audit trail, with what went into it."""
        row = state.model(report.model_sha256) if report.completed else None
        if row is None:
            return
        audit.model_published(
            round=report.round,
            sha256=row.sha256,
            parent=row.parent,
            contributors=row.metadata.get("contributors", []),
            sites=row.metadata.get("sites", []),
            regions=row.metadata.get("regions", []),
            metrics=report.metrics,
        )

    return publish


def _line(report: dict[str, object]) -> str:
    return json.dumps(report, allow_nan=False, default=_json_default) + "\n"


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
