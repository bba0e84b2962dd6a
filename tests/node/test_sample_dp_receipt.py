"""On receipt, the plan's ``sample-dp-required``: an update without sample-level DP
from a site whose jurisdiction requires it rejects its task and is never folded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from test_rounds import BASE, chunks, delta, make_engine

from fedsov.codec import encode
from fedsov.exceptions import PolicyViolation
from fedsov.messages import PrivacyReport, UpdateHeader
from fedsov.node.engine import RoundReport
from fedsov.node.rounds import TaskStatus
from fedsov.pki import NodeIdentity, Role
from fedsov.policy import load_plan
from fedsov.policy.runtime import UpdatePolicy

PLAN = """
[federation]
name = "fed"

[model]
factory = "fedsov.simulation.models:mlp"

[rounds]
num_rounds = 1

[[nodes]]
name = "hub"
tier = "global"
jurisdiction = "EU"

[[nodes]]
name = "paris"
tier = "edge"
jurisdiction = "EU"
upstream = "hub"

[[nodes]]
name = "lyon"
tier = "edge"
jurisdiction = "EU"
upstream = "hub"

[[nodes]]
name = "pune"
tier = "edge"
jurisdiction = "IN"
upstream = "hub"

[policy]
sample_dp = ["EU"]
"""
DP_SGD = PrivacyReport(enabled=True, epsilon=1.0, delta=1e-5, noise_multiplier=1.0, steps=1)
NO_DP = PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)
SENT = {"paris": (NO_DP, 1.0), "lyon": (DP_SGD, 2.0), "pune": (NO_DP, 4.0)}


def identity(site: str, jurisdiction: str) -> NodeIdentity:
    return NodeIdentity(site, Role.site, jurisdiction, "fed")


async def one_round(tmp_path: Path) -> tuple[RoundReport, list[str], dict[str, np.ndarray]]:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(PLAN)
    plan = load_plan(plan_file)
    eng = make_engine(tmp_path, num_rounds=1, min_updates=2, judge=UpdatePolicy(plan))
    for site in SENT:
        await eng.subscribe(identity(site, plan.node(site).jurisdiction))
    run = asyncio.ensure_future(eng.run_round(1, training=eng.schedule.training))
    while eng.current is None:
        await asyncio.sleep(0.01)
    refused = []
    for record in list(eng.current.tasks.values()):
        privacy, value = SENT[record.site]
        enc = encode(delta(value))
        header = UpdateHeader.answering(record.task, enc, num_examples=10, privacy=privacy)
        who = identity(record.site, plan.node(record.site).jurisdiction)
        try:
            eng.check_upload(who, header)  # the transport asks first, before any byte
            await eng.receive_update(who, header, chunks(enc.payload))
        except PolicyViolation as exc:
            refused.append(str(exc))
    report = await run
    return report, refused, eng.model.arrays()


def test_an_update_without_sample_dp_is_rejected_and_not_folded(tmp_path: Path) -> None:
    report, refused, model = asyncio.run(one_round(tmp_path))
    status = {s.site: (s.status, s.reason) for s in report.sites}
    assert status["lyon"] == (TaskStatus.ACCEPTED, "")
    assert status["pune"] == (TaskStatus.ACCEPTED, "")  # IN requires nothing
    rejected, reason = status["paris"]
    assert rejected == TaskStatus.REJECTED
    assert reason.startswith("update of 'paris' refused: sample-dp-required: EU requires")
    assert refused == [reason]
    for name, base in BASE.items():  # the mean of lyon's 2.0 and pune's 4.0 only
        np.testing.assert_allclose(model[name], base + 3.0, rtol=1e-6)
