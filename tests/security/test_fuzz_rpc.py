"""Issue 13, item 8: fuzzed requests over every RPC, then an intact honest round.

A real coordinator process over mTLS gets seeded random requests (hostile field
values, byte flips of valid messages, pure noise) on Join, SubscribeTasks,
DownloadModel, UploadUpdate and DeclineTask from admitted sites, from a same-CA site
outside the allow-list and from another CA's certificate. Every call must end with a
named status, the coordinator must stay up and serving, and the honest round that
follows must produce exactly the honest updates' FedAvg.
"""

from __future__ import annotations

import asyncio
import os
from random import Random

import pytest
from hostile import (
    HONEST,
    CoordinatorProcess,
    Fuzzer,
    FuzzReport,
    Target,
    build_hostile_pki,
    fuzz_then_honest_round,
    hostile_sites,
    print_report,
)

from fedsov.codec import Manifest, TensorSpec
from fedsov.messages import TrainingPlan, TrainTask

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SEED = int(os.environ.get("FEDSOV_FUZZ_SEED", "1313"))
REQUESTS = 300
HOSTILE = hostile_sites(8)  # admitted: each task ends at its first deep refusal


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> FuzzReport:
    out = tmp_path_factory.mktemp("fuzz")
    pki = build_hostile_pki(out / "pki", hostile=HOSTILE)
    rounds = {
        "num_rounds": 1,
        "min_sites": len(HONEST) + len(HOSTILE),
        "min_updates": len(HONEST),
        "timeout_s": 150.0,
        "start_timeout_s": 60.0,
        "max_attempts": 1,
    }
    with CoordinatorProcess(out, pki, rounds=rounds) as coordinator:
        result = asyncio.run(
            fuzz_then_honest_round(coordinator, requests=REQUESTS, seed=SEED, deadline_s=200.0)
        )
    print(f"fuzz seed {SEED} (FEDSOV_FUZZ_SEED to change it)")
    print_report(result)
    return result


def test_every_rpc_was_fuzzed_from_every_certificate(report: FuzzReport) -> None:
    seen = {(o.case.rpc, o.case.who in HOSTILE) for o in report.outcomes}
    rpcs = {o.case.rpc for o in report.outcomes}
    assert len(report.outcomes) == REQUESTS
    assert rpcs == {"Join", "SubscribeTasks", "DownloadModel", "UploadUpdate", "DeclineTask"}
    assert {(rpc, True) for rpc in rpcs} <= seen
    assert {o.case.who for o in report.outcomes} >= {"outsider", "foreign", *HOSTILE}


def test_every_call_ends_with_a_named_status(report: FuzzReport) -> None:
    wrong = [o.describe() for o in report.violations]
    assert not wrong, f"{len(wrong)} calls outside their named statuses:\n" + "\n".join(wrong[:30])


def test_the_coordinator_stays_up_and_serving(report: FuzzReport) -> None:
    assert report.alive_after_fuzz, report.log_tail
    assert report.serving_after_fuzz, report.log_tail


def test_an_honest_round_then_completes_with_an_intact_aggregate(report: FuzzReport) -> None:
    assert report.honest_receipts == dict.fromkeys(HONEST, "OK"), report.log_tail
    assert report.finished is not None and report.finished.rounds == 1, report.log_tail
    assert report.model_error is not None and report.model_error <= 1e-6, report.model_error


def test_no_hostile_update_is_accepted(report: FuzzReport) -> None:
    accepted = {s["site"] for s in report.round_sites if s["status"] == "accepted"}
    assert accepted == set(HONEST), report.round_sites


def test_fuzzing_is_deterministic() -> None:
    """The same seed draws the same cases (the coordinator's answers may differ in time)."""
    manifest = Manifest((TensorSpec("w", "float32", (4, 3)),))
    task = TrainTask("t" * 32, 1, "a" * 64, 48, manifest, TrainingPlan(), 0.0, 7)
    tasks = {name: task for name in (*HONEST, *HOSTILE)}
    target = Target(tasks, task.model_sha256, task.model_size, manifest)

    def draw() -> list[object]:
        fuzzer = Fuzzer(Random(SEED), target, HOSTILE)
        return [fuzzer.case() for _ in range(50)]

    assert draw() == draw()
