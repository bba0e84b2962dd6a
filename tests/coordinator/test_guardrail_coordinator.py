"""A real ``fedsov coordinator`` process stopped by its guardrails (and by SIGTERM): the
exit code names the kind of stop, the summary and the audit ledger name the rule, and
every site is told. Sites are synthetic (guardrail_harness): the rounds take
milliseconds, so each test costs about one coordinator start-up (about 1.5 s); the
metric and ε each round reports are the test's choice, so every stop is exact.

Every kind also runs end to end with real sites: tests/e2e/test_guardrail_scenarios.py."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from guardrail_harness import SITES, GuardedCoordinator, SitePlan, run_site, run_sites

from fedsov.audit import verify_ledger
from fedsov.exitcodes import GUARDRAIL_EXIT, ExitCode

pytestmark = pytest.mark.e2e

CASES: list[tuple[str, dict[str, Any], SitePlan, int, str]] = [
    (
        "privacy-ceiling",
        {"epsilon_ceiling": {"EU": 2.5}},
        SitePlan(epsilon=(1.0, 2.0, 3.0)),
        3,
        "EU's worst site ε 3 (site-1) passed its ceiling 2.5 after round 3",
    ),
    (
        "no-improvement",
        {"no_improvement_rounds": 2, "min_delta": 0.01},
        SitePlan(bias_steps=(0.5, 0.005, 0.0)),
        3,
        "for 2 rounds (no_improvement_rounds 2)",
    ),
    (
        "regression",
        {"max_drop": 0.2},
        SitePlan(bias_steps=(0.5, 0.1, -0.35)),
        3,
        "is 0.35 below the best",
    ),
]


@pytest.mark.parametrize(
    ("kind", "rules", "plan", "last_round", "says"), CASES, ids=[c[0] for c in CASES]
)
def test_a_tripped_rule_stops_the_coordinator_with_its_exit_code(
    tmp_path: Path, kind: str, rules: dict[str, Any], plan: SitePlan, last_round: int, says: str
) -> None:
    started = time.monotonic()
    with GuardedCoordinator(tmp_path, rules) as coordinator:
        logs = asyncio.run(run_sites(coordinator, plan))
        code = coordinator.wait()
    print(f"{kind}: {time.monotonic() - started:.1f} s")
    assert code == GUARDRAIL_EXIT[kind], coordinator.log_tail()
    summary = coordinator.summary()
    assert summary["rounds"] == last_round
    assert summary["stop"]["kind"] == kind and summary["stop"]["exit_code"] == code
    assert says in summary["stop"]["detail"]
    assert summary["status"] == f"stopped by guardrail {kind}: {summary['stop']['detail']}"
    for log in logs:  # every site was told, with the reason
        assert log.rounds == list(range(1, last_round + 1))
        assert log.finished is not None and log.finished.reason == summary["status"]
    events = coordinator.audit_events()
    (stop,) = [e for e in events if e["event"] == "guardrail-stop"]
    assert (stop["decision"], stop["round"]) == (kind, last_round)
    assert stop["detail"] == {"kind": kind, "reason": summary["stop"]["detail"], "exit_code": code}
    assert events.index(stop) > max(
        i for i, e in enumerate(events) if e["event"] == "model-published"
    )
    cert = coordinator.pki["coordinator"].cert
    assert verify_ledger(
        coordinator.output_dir / "audit" / "ledger.jsonl",
        certificate=x509.load_pem_x509_certificate(cert.read_bytes()),
    ).ok


def test_without_its_own_table_the_coordinator_keeps_its_plans_guardrails(
    tmp_path: Path,
) -> None:
    """The plan's [guardrails] (pinned by its hash); jurisdictions from its nodes."""
    rules = "[guardrails]\nepsilon_ceiling = { EU = 1.5 }\n"
    with GuardedCoordinator(tmp_path, {}, plan_guardrails=rules) as coordinator:
        logs = asyncio.run(run_sites(coordinator, SitePlan(epsilon=(1.0, 2.0))))
        code = coordinator.wait()
    assert code == ExitCode.PRIVACY_CEILING, coordinator.log_tail()
    detail = "EU's worst site ε 2 (site-1) passed its ceiling 1.5 after round 2"
    assert coordinator.summary()["stop"]["detail"] == detail
    assert all(log.finished is not None for log in logs)


def test_sigterm_stops_the_coordinator_with_143(tmp_path: Path) -> None:
    """SIGTERM is a stop, not a success: exit 143 (128 + 15); state committed."""
    with GuardedCoordinator(tmp_path, {}, num_rounds=5) as coordinator:
        address = coordinator.address

        async def two_rounds_then_sigterm() -> None:
            sites = [
                asyncio.ensure_future(
                    run_site(address, coordinator.pki[s], SitePlan(), until_round=2)
                )
                for s in SITES
            ]
            await asyncio.gather(*sites)
            assert coordinator.proc is not None
            coordinator.proc.send_signal(signal.SIGTERM)

        asyncio.run(asyncio.wait_for(two_rounds_then_sigterm(), 90))
        code = coordinator.wait()
    assert code == 143 and ExitCode(code) is ExitCode.SIGTERM, coordinator.log_tail()
    summary = coordinator.summary()
    assert summary["status"] == "stopped by SIGTERM"
    assert summary["stop"] == {"kind": "signal", "detail": "SIGTERM", "exit_code": 143}
    assert 1 <= summary["rounds"] <= 2  # round 2 may still be closing when SIGTERM lands
