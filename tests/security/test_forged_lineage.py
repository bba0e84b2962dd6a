"""Issue 13, item 4 (lineage can be forged): contributors come from what the receiver can
prove. A site naming anyone else is refused; a regional aggregator's contributors
need its statement, signed with the key of its mTLS certificate over its audit head,
naming only sites below it in the plan; the lineage lists exactly the sites with
receipts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fedsov.audit import AuditLedger, Signer, read_ledger
from fedsov.audit.statement import sign_statement
from fedsov.audit.trail import AuditTrail
from fedsov.codec import encode, iter_chunks
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.exceptions import ProtocolError
from fedsov.messages import AuditHead, PrivacyReport, TrainingPlan, TrainTask, UpdateHeader
from fedsov.node.contributors import ContributorCheck
from fedsov.node.engine import EngineSettings
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.participant.upstream import Upstream
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.pki._keys import generate_key
from fedsov.pki.identity import NodeIdentity
from fedsov.policy.plan import Plan, load_plan
from fedsov.policy.runtime import PlanAdmission
from fedsov.strategy import FedAvg
from fedsov.testing import two_jurisdiction_plan
from fedsov.transport.errors import status_for

FED = "lineage"
BASE = {"w": np.zeros((3, 4), dtype=np.float32)}
HEAD = AuditHead(41, "d" * 64)
NODES = {
    "coordinator": (Role.coordinator, "EU"),
    "agg-eu": (Role.aggregator, "EU"),
    "agg-in": (Role.aggregator, "IN"),
    "paris": (Role.site, "EU"),
    "berlin": (Role.site, "EU"),
    "mumbai": (Role.site, "IN"),
    "delhi": (Role.site, "IN"),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    specs = [NodeSpec(name, role, j) for name, (role, j) in NODES.items()]
    return build_pki(tmp_path_factory.mktemp("pki"), federation=FED, nodes=specs)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    path = tmp_path_factory.mktemp("plan") / "plan.toml"
    toml = two_jurisdiction_plan(
        name=FED, seed=1, rounds=1, timeout_s=30, paris_upstream="coordinator"
    )
    path.write_text(toml)
    return load_plan(path)


def identity(pki: dict[str, NodePaths], name: str) -> NodeIdentity:
    p = pki[name]
    return load_tls_material(cert=p.cert, key=p.key, ca=p.ca).identity


def signer(pki: dict[str, NodePaths], name: str) -> Signer:
    return Signer.load(pki[name].key)


def header(
    contributors: tuple[str, ...], *, task: TrainTask | None = None, **over: Any
) -> UpdateHeader:
    enc = encode({"w": np.full((3, 4), 0.5, dtype=np.float32)})
    fields: dict[str, Any] = dict(
        task_id=task.task_id if task else "t-1",
        round=task.round if task else 1,
        manifest=enc.manifest,
        num_examples=10,
        payload_size=enc.size,
        payload_sha256=enc.sha256,
        base_model_sha256=task.model_sha256 if task else "e" * 64,
        privacy=PrivacyReport(enabled=False, epsilon=0.0, delta=0.0),
        contributors=contributors,
        audit_head=HEAD,
    )
    return UpdateHeader(**(fields | over))


def signed(pki: dict[str, NodePaths], name: str, h: UpdateHeader) -> UpdateHeader:
    return replace(h, contributors_signature=sign_statement(signer(pki, name), FED, h))


def refusal(check: ContributorCheck, peer: NodeIdentity, h: UpdateHeader) -> str:
    with pytest.raises(ProtocolError) as info:
        check(peer, h)
    assert status_for(info.value) is grpc.StatusCode.INVALID_ARGUMENT
    return str(info.value)


# ----- the check, case by case -----------------------------------------------------


def test_a_site_counts_itself_and_naming_a_ghost_is_refused(
    pki: dict[str, NodePaths], plan: Plan
) -> None:
    check, paris = ContributorCheck(FED, plan), identity(pki, "paris")
    assert check(paris, header(())).contributors == ("paris",)
    assert check(paris, header(("paris",))).contributors == ("paris",)
    why = refusal(check, paris, header(("ghost-hospital",)))
    assert "'ghost-hospital'" in why and "counts that site only" in why
    assert "counts that site only" in refusal(check, paris, header(("paris", "berlin")))
    forged = signed(pki, "berlin", header(("paris",)))  # a statement, when sent, must verify
    assert "does not verify" in refusal(check, paris, forged)
    assert check(paris, signed(pki, "paris", header(("paris",)))).contributors == ("paris",)


def test_a_valid_region_statement_is_accepted(pki: dict[str, NodePaths], plan: Plan) -> None:
    agg = identity(pki, "agg-in")
    h = signed(pki, "agg-in", header(("mumbai", "delhi")))
    got = ContributorCheck(FED, plan)(agg, h)
    assert got.contributors == ("delhi", "mumbai")  # sorted, as signed
    assert got.contributors_signature == h.contributors_signature


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing signature", "no signed contributors statement"),
        ("another key", "does not verify"),
        ("contributor added after signing", "does not verify"),
        ("another head", "does not verify"),
        ("no head", "needs the sender's audit head"),
        ("another federation", "does not verify"),
        ("outside its region", "not sites below it in the plan"),
        ("twice", "twice"),
        ("none", "names no contributors"),
        ("bad name", "invalid contributor name"),
    ],
)
def test_an_unproven_region_statement_is_refused(
    pki: dict[str, NodePaths], plan: Plan, case: str, message: str
) -> None:
    agg, good = identity(pki, "agg-in"), header(("mumbai", "delhi"))
    sign = signer(pki, "agg-in")
    forged = {
        "missing signature": good,
        "another key": replace(
            good, contributors_signature=sign_statement(Signer(generate_key()), FED, good)
        ),
        "contributor added after signing": replace(
            signed(pki, "agg-in", good), contributors=("mumbai", "delhi", "paris")
        ),
        "another head": replace(signed(pki, "agg-in", good), audit_head=AuditHead(42, "d" * 64)),
        "no head": signed(pki, "agg-in", replace(good, audit_head=None)),
        "another federation": replace(
            good, contributors_signature=sign_statement(sign, "other-fed", good)
        ),
        "outside its region": signed(pki, "agg-in", header(("mumbai", "berlin"))),
        "twice": signed(pki, "agg-in", header(("mumbai", "mumbai"))),
        "none": signed(pki, "agg-in", header(())),
        "bad name": signed(pki, "agg-in", header(("Ghost Hospital",))),
    }[case]
    assert message in refusal(ContributorCheck(FED, plan), agg, forged)


def test_without_a_plan_a_region_is_bounded_but_not_placed(pki: dict[str, NodePaths]) -> None:
    agg, check = identity(pki, "agg-in"), ContributorCheck(FED)
    assert check(agg, signed(pki, "agg-in", header(("anywhere",)))).contributors == ("anywhere",)
    many = tuple(f"site-{i}" for i in range(10_001))
    assert "at most 10000" in refusal(check, agg, signed(pki, "agg-in", header(many)))


def test_without_a_certificate_an_update_counts_its_sender_only() -> None:
    insecure = NodeIdentity("dev-region", Role.site, "DEV", FED)
    got = ContributorCheck(FED)(insecure, header(("ghost-hospital", "another")))
    assert got.contributors == ("dev-region",) and got.contributors_signature == ""


def test_a_participant_signs_its_contributors_with_its_ledger_key(
    pki: dict[str, NodePaths], plan: Plan, tmp_path: Path
) -> None:
    sent: list[UpdateHeader] = []

    class Client:
        upstream_name, upstream_jurisdiction = "coordinator", "EU"

        async def upload(self, h: UpdateHeader, payload: bytes) -> None:
            sent.append(h)

    p = pki["agg-in"]
    trail = AuditTrail.open(
        tmp_path / "ledger.jsonl", load_tls_material(cert=p.cert, key=p.key, ca=p.ca)
    )
    upstream = Upstream(Client(), trail)  # type: ignore[arg-type]
    assert asyncio.run(upstream.send(header(("mumbai", "delhi"), audit_head=None), b""))
    trail.close()
    (h,) = sent
    assert h.audit_head is not None and h.contributors_signature
    assert ContributorCheck(FED, plan)(identity(pki, "agg-in"), h).contributors == (
        "delhi",
        "mumbai",
    )


# ----- a whole round at the coordinator --------------------------------------------


async def chunks(payload: bytes | bytearray) -> AsyncIterator[bytes]:
    for chunk in iter_chunks(payload, 16):
        yield bytes(chunk)


async def first_task(events: AsyncIterator[object]) -> TrainTask:
    async for event in events:
        if isinstance(event, TrainTask):
            return event
    raise AssertionError("the task stream ended without a task")


def coordinator(tmp_path: Path, pki: dict[str, NodePaths], plan: Plan) -> ScheduledEngine:
    ledger = AuditLedger.open(
        tmp_path / "audit" / "ledger.jsonl",
        signer=signer(pki, "coordinator"),
        node="coordinator",
        jurisdiction="EU",
    )
    return ScheduledEngine(
        EngineSettings(
            federation=FED,
            min_sites=3,
            min_updates=3,
            sites_per_round=0,
            round_timeout_s=30.0,
            start_timeout_s=10.0,
            seed=0,
            heartbeat_s=1.0,
        ),
        Schedule(num_rounds=1, max_attempts=1, training=TrainingPlan(1, 8, 0.1)),
        initial=GlobalModel.from_arrays(BASE, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / "models"),
        work_dir=tmp_path / "work",
        admission=PlanAdmission(plan, "coordinator"),
        audit=AuditTrail(ledger, federation=FED),
        contributors=ContributorCheck(FED, plan),
    )


def test_forged_contributors_never_reach_the_lineage(
    tmp_path: Path, pki: dict[str, NodePaths], plan: Plan
) -> None:
    eng = coordinator(tmp_path, pki, plan)
    peers = {name: identity(pki, name) for name in ("paris", "agg-eu", "agg-in")}
    statements: dict[str, str] = {}

    async def scenario() -> None:
        streams = {name: await eng.subscribe(peer) for name, peer in peers.items()}
        run = asyncio.create_task(eng.run())
        tasks = {name: await first_task(events) for name, events in streams.items()}
        payload = encode({"w": np.full((3, 4), 0.5, dtype=np.float32)}).payload

        async def upload(name: str, h: UpdateHeader) -> None:
            await eng.receive_update(peers[name], h, chunks(payload))

        ghost = header(("ghost-hospital",), task=tasks["paris"])
        with pytest.raises(ProtocolError, match="counts that site only"):
            await upload("paris", ghost)
        forged = signed(pki, "agg-in", header(("berlin",), task=tasks["agg-eu"]))
        with pytest.raises(ProtocolError, match="does not verify"):
            await upload("agg-eu", forged)  # agg-in's statement, sent by agg-eu
        await upload("paris", header((), task=tasks["paris"]))
        await upload("agg-eu", signed(pki, "agg-eu", header(("berlin",), task=tasks["agg-eu"])))
        agg_in = signed(pki, "agg-in", header(("mumbai", "delhi"), task=tasks["agg-in"]))
        await upload("agg-in", agg_in)
        statements["agg-in"] = agg_in.contributors_signature
        (report,) = await asyncio.wait_for(run, 30)
        assert report.completed

    asyncio.run(scenario())
    eng.audit.close()
    lineage = json.loads((tmp_path / "models" / "round-0001.json").read_text())
    assert lineage["sites"] == ["berlin", "delhi", "mumbai", "paris"]
    assert lineage["contributors"] == ["agg-eu", "agg-in", "paris"]
    assert lineage["regions"] == ["agg-eu", "agg-in"]
    row = eng.state.latest_model()
    assert row is not None and row.metadata["sites"] == lineage["sites"]
    ledger = tmp_path / "audit" / "ledger.jsonl"
    assert "ghost-hospital" not in ledger.read_text()
    received = {r.peer: r.detail for r in read_ledger(ledger) if r.event == "update-received"}
    assert received["paris"]["contributors"] == ["paris"]
    assert received["agg-in"]["contributors"] == ["delhi", "mumbai"]
    assert received["agg-in"]["contributors_signature"] == statements["agg-in"]
