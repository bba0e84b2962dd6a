"""The metrics' own rules: bounded labels, counters moved by what a round report says."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedsov.config import MetricsSettings
from fedsov.exceptions import ConfigError
from fedsov.metrics import NodeMetrics, SiteMetrics, reason_code, serve_metrics


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("below-k: only 2 of the 3 sites needed contributed", "below-k"),
        ("budget-exhausted: round 4 would take ε to 8.1", "budget-exhausted"),
        ("round 3 closed before its update arrived", "late"),  # free text: the default
        ("", "late"),
        ("Bad-Code: upper case is not a code", "late"),
    ],
)
def test_reason_code_keeps_labels_few(reason: str, code: str) -> None:
    assert reason_code(reason, default="late") == code


def samples(
    metrics: NodeMetrics | SiteMetrics,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_closed_round_moves_the_counters_it_reports() -> None:
    metrics = NodeMetrics()
    metrics.budget_of = {"a": 10.0}.get
    metrics.round_opened()
    metrics.round_closed(
        completed=True,
        seconds=4.5,
        outcomes=[("accepted", ""), ("declined", "budget-exhausted: ..."), ("late", "")],
        epsilons=[("a", 2.5), ("b", 1.0)],
    )
    metrics.round_opened()
    metrics.round_closed(completed=False, seconds=1.0, outcomes=[("rejected", "x y z")])
    got = samples(metrics)
    assert got[("fedsov_rounds_opened_total", ())] == 2
    assert got[("fedsov_rounds_completed_total", ())] == 1
    assert got[("fedsov_rounds_failed_total", ())] == 1
    assert got[("fedsov_updates_accepted_total", ())] == 1
    refused = {k[1]: v for k, v in got.items() if k[0] == "fedsov_updates_refused_total"}
    assert refused == {
        (("reason", "budget-exhausted"), ("status", "declined")): 1,
        (("reason", "late"), ("status", "late")): 1,
        (("reason", "rejected"), ("status", "rejected")): 1,
    }
    assert got[("fedsov_round_duration_seconds_sum", ())] == pytest.approx(5.5)
    assert got[("fedsov_participant_epsilon", (("participant", "a"),))] == 2.5
    assert got[("fedsov_participant_epsilon_budget_remaining", (("participant", "a"),))] == 7.5
    assert ("fedsov_participant_epsilon_budget_remaining", (("participant", "b"),)) not in got


def test_gauges_are_read_at_each_scrape() -> None:
    metrics = NodeMetrics()
    connected = [3]
    metrics.watch(participants=lambda: connected[0], round=lambda: 7)
    metrics.watch_audit(lambda: (41, "ab" * 32))
    connected[0] = 5
    got = samples(metrics)
    assert got[("fedsov_participants_connected", ())] == 5
    assert got[("fedsov_round", ())] == 7
    assert got[("fedsov_audit_ledger_entries", ())] == 42
    assert got[("fedsov_audit_ledger_head_info", (("seq", "41"), ("sha256", "ab" * 32)))] == 1


def test_a_site_publishes_what_it_spent() -> None:
    metrics = SiteMetrics()
    metrics.spent(0.0, 8.0)
    metrics.trained(seconds=2.0, epsilon=3.25, budget=8.0)
    metrics.declined("budget-exhausted")
    got = samples(metrics)
    assert got[("fedsov_site_epsilon_spent", ())] == 3.25
    assert got[("fedsov_site_epsilon_budget_remaining", ())] == 4.75
    assert got[("fedsov_site_rounds_trained_total", ())] == 1
    assert got[("fedsov_site_tasks_declined_total", (("code", "budget-exhausted"),))] == 1


def test_the_endpoint_serves_the_exposition_format(tmp_path: Path) -> None:
    metrics = NodeMetrics()
    metrics.round_opened()
    server = serve_metrics(metrics.registry, "127.0.0.1:0", port_file=tmp_path / "port")
    try:
        assert int((tmp_path / "port").read_text()) == server.port
        with urllib.request.urlopen(server.url, timeout=10) as response:
            text = response.read().decode()
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"fedsov_rounds_opened", "fedsov_round_duration_seconds"} <= names
    finally:
        server.close()


def test_a_busy_address_says_what_to_do() -> None:
    metrics = NodeMetrics()
    first = serve_metrics(metrics.registry, "127.0.0.1:0")
    try:
        with pytest.raises(ConfigError, match=r"metrics.address .* cannot listen there"):
            serve_metrics(NodeMetrics().registry, f"127.0.0.1:{first.port}")
    finally:
        first.close()


def test_the_metrics_table_defaults_to_loopback() -> None:
    assert MetricsSettings().address.startswith("127.0.0.1:")
    with pytest.raises(ConfigError, match="host:port"):
        MetricsSettings(address="9464")
