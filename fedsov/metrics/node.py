"""The serving side's metrics: a coordinator's or a regional aggregator's."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from fedsov.metrics.labels import reason_code

__all__ = ["NodeMetrics"]

# Rounds last seconds (a digits MLP) to many minutes (a large model over slow links).
ROUND_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
UPLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class NodeMetrics:
    """Counters a node moves as rounds run; gauges read from the node when scraped."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.rounds_opened = Counter(
            "fedsov_rounds_opened_total", "Round attempts opened.", registry=r
        )
        self.rounds_completed = Counter(
            "fedsov_rounds_completed_total", "Round attempts that produced a model.", registry=r
        )
        self.rounds_failed = Counter(
            "fedsov_rounds_failed_total", "Round attempts that produced no model.", registry=r
        )
        self.updates_accepted = Counter(
            "fedsov_updates_accepted_total", "Updates folded into a round's aggregate.", registry=r
        )
        self.updates_refused = Counter(
            "fedsov_updates_refused_total",
            "Tasks that brought no accepted update, by status and reason code.",
            ["status", "reason"],
            registry=r,
        )
        self.received_bytes = Counter(
            "fedsov_received_bytes_total", "Update payload bytes received.", registry=r
        )
        self.sent_bytes = Counter(
            "fedsov_sent_bytes_total", "Model payload bytes sent to participants.", registry=r
        )
        self.round_seconds = Histogram(
            "fedsov_round_duration_seconds",
            "Time from a round's opening to its close.",
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self.upload_seconds = Histogram(
            "fedsov_upload_duration_seconds",
            "Time from an upload's header to its receipt.",
            buckets=UPLOAD_BUCKETS,
            registry=r,
        )
        self.rpc_refusals = Counter(
            "fedsov_rpc_refusals_total", "Calls refused, by fedsov-reason.", ["reason"], registry=r
        )
        self.policy_refusals = Counter(
            "fedsov_policy_refusals_total",
            "Participants refused by the plan or admission, by decision.",
            ["decision"],
            registry=r,
        )
        self.participants = Gauge(
            "fedsov_participants_connected", "Participants subscribed now.", registry=r
        )
        self.round = Gauge("fedsov_round", "The round open now, or the last one run.", registry=r)
        self.epsilon = Gauge(
            "fedsov_participant_epsilon",
            "ε a participant reported with its last accepted update (what it published).",
            ["participant"],
            registry=r,
        )
        self.budget_left = Gauge(
            "fedsov_participant_epsilon_budget_remaining",
            "The participant's ε budget (from the plan) less its last reported ε.",
            ["participant"],
            registry=r,
        )
        # A participant's ε budget (the role sets it from its plan); None: none known.
        self.budget_of: Callable[[str], float | None] = lambda name: None

    def watch(
        self,
        *,
        participants: Callable[[], int],
        round: Callable[[], int],
    ) -> None:
        """Gauges read from the node at each scrape (on the metrics thread: reads only)."""
        self.participants.set_function(participants)
        self.round.set_function(round)

    def watch_audit(self, head: Callable[[], tuple[int, str] | None]) -> None:
        """The audit ledger's head ``(seq, sha256)``, read at each scrape."""
        self.registry.register(_AuditHead(head))

    def round_opened(self) -> None:
        self.rounds_opened.inc()

    def round_closed(
        self,
        *,
        completed: bool,
        seconds: float,
        outcomes: list[tuple[str, str]],
        epsilons: Sequence[tuple[str, float]] = (),
    ) -> None:
        """One closed attempt: its ``(status, reason)`` per task, and the ε each accepted
        participant reported ``(name, ε)``."""
        for name, epsilon in epsilons:
            self.participant_privacy(name, epsilon, self.budget_of(name))
        (self.rounds_completed if completed else self.rounds_failed).inc()
        self.round_seconds.observe(seconds)
        for status, reason in outcomes:
            if status == "accepted":
                self.updates_accepted.inc()
            else:
                code = reason_code(reason, default=status)
                self.updates_refused.labels(status=status, reason=code).inc()

    def update_received(self, nbytes: int, seconds: float) -> None:
        self.received_bytes.inc(nbytes)
        self.upload_seconds.observe(seconds)

    def model_sent(self, nbytes: int) -> None:
        self.sent_bytes.inc(nbytes)

    def refused(self, reason: str) -> None:
        self.rpc_refusals.labels(reason=reason_code(reason, default="other")).inc()

    def policy_refused(self, decision: str) -> None:
        self.policy_refusals.labels(decision=reason_code(decision, default="other")).inc()

    def participant_privacy(self, name: str, epsilon: float, budget: float | None) -> None:
        self.epsilon.labels(participant=name).set(epsilon)
        if budget is not None:
            self.budget_left.labels(participant=name).set(budget - epsilon)


class _AuditHead(Collector):
    """``fedsov_audit_ledger_entries`` and ``fedsov_audit_ledger_head_info``."""

    def __init__(self, head: Callable[[], tuple[int, str] | None]) -> None:
        self._head = head

    def collect(self) -> Iterable[Metric]:
        head = self._head()
        entries = GaugeMetricFamily(
            "fedsov_audit_ledger_entries", "Records in this node's audit ledger."
        )
        entries.add_metric([], 0 if head is None else head[0] + 1)
        yield entries
        if head is not None:
            yield InfoMetricFamily(
                "fedsov_audit_ledger_head",
                "The audit ledger's last record: its seq and the SHA-256 of its line.",
                value={"seq": str(head[0]), "sha256": head[1]},
            )
