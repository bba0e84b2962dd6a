"""A site's metrics: what it trained, what it spent, what it sent."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from fedsov.metrics.labels import reason_code

__all__ = ["SiteMetrics"]

TRAIN_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class SiteMetrics:
    """Moved by the site agent; ε figures are the ones it publishes with its updates."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.rounds_trained = Counter(
            "fedsov_site_rounds_trained_total", "Rounds trained and sent.", registry=r
        )
        self.tasks_declined = Counter(
            "fedsov_site_tasks_declined_total", "Tasks declined, by code.", ["code"], registry=r
        )
        self.sent_bytes = Counter(
            "fedsov_site_sent_bytes_total", "Update payload bytes sent upstream.", registry=r
        )
        self.received_bytes = Counter(
            "fedsov_site_received_bytes_total", "Model bytes downloaded.", registry=r
        )
        self.training_seconds = Histogram(
            "fedsov_site_training_duration_seconds",
            "Local training time per round.",
            buckets=TRAIN_BUCKETS,
            registry=r,
        )
        self.epsilon = Gauge(
            "fedsov_site_epsilon_spent", "ε this site has spent (its privacy ledger).", registry=r
        )
        self.budget = Gauge("fedsov_site_epsilon_budget", "This site's ε budget.", registry=r)
        self.budget_left = Gauge(
            "fedsov_site_epsilon_budget_remaining", "ε budget less ε spent.", registry=r
        )

    def spent(self, epsilon: float, budget: float | None) -> None:
        """The ledger's ε so far and the budget it counts against (None: no budget)."""
        self.epsilon.set(epsilon)
        if budget is not None:
            self.budget.set(budget)
            self.budget_left.set(budget - epsilon)

    def trained(self, *, seconds: float, epsilon: float, budget: float | None) -> None:
        self.rounds_trained.inc()
        self.training_seconds.observe(seconds)
        self.spent(epsilon, budget)

    def declined(self, code: str) -> None:
        self.tasks_declined.labels(code=reason_code(code, default="other")).inc()
