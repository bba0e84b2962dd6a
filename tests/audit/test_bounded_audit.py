"""Issue 13, item 6: the audit trail stays bounded under a flood of refusals, downloads
and long reasons; the ledger's memory does not grow with its records."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedsov.audit import AuditLedger, Signer, read_ledger, verify_ledger
from fedsov.audit.refusals import REFUSAL_INTERVAL_S, RefusalCounter
from fedsov.audit.trail import KEEP_ROUNDS, MAX_TEXT, AuditTrail, RecentKeys, cap_text
from fedsov.pki._keys import generate_key
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc
from fedsov.testing import make_engine
from fedsov.transport.options import INSECURE_NAME_HEADER
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

PEERS = ("rogue-1", "rogue-2", "rogue-3")
SIGNER = Signer(generate_key())


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def open_trail(path: Path, clock: Clock | None = None) -> AuditTrail:
    ledger = AuditLedger.open(path, signer=SIGNER, node="coordinator", jurisdiction="EU")
    refusals = RefusalCounter(clock=clock) if clock else None
    return AuditTrail(ledger, federation="fed", refusals=refusals)


def refusals_of(path: Path) -> list[dict[str, object]]:
    return [
        {"peer": r.peer, "decision": r.decision, **r.detail}
        for r in read_ledger(path)
        if r.event == "policy-refused"
    ]


def test_ten_thousand_refusals_from_three_peers_write_a_handful_of_records(
    tmp_path: Path,
) -> None:
    path, clock = tmp_path / "ledger.jsonl", Clock()
    trail = open_trail(path, clock)
    for i in range(10_000):
        clock.now += 0.001
        trail.refused(
            peer=PEERS[i % 3], peer_jurisdiction="EU", decision="admission", reason=f"no {i}"
        )
    trail.close()
    records = refusals_of(path)
    assert len(records) == 6  # per peer: the first at once, the rest of the interval as one
    total = Counter[object]()
    for r in records:
        total[r["peer"]] += r["count"]  # type: ignore[operator]
    assert total == {"rogue-1": 3334, "rogue-2": 3333, "rogue-3": 3333}
    first = [r for r in records if r["count"] == 1]
    assert [r["reason"] for r in first] == ["no 0", "no 1", "no 2"]
    assert all(r["first"] <= r["last"] for r in records)  # type: ignore[operator]
    assert verify_ledger(path).ok


def test_counts_are_flushed_by_the_first_event_after_the_interval(tmp_path: Path) -> None:
    path, clock = tmp_path / "ledger.jsonl", Clock()
    trail = open_trail(path, clock)
    for _ in range(5):
        trail.refused(peer="rogue-1", peer_jurisdiction=None, decision="plan-mismatch", reason="x")
    assert len(refusals_of(path)) == 1  # the first only, while the interval runs
    clock.now += REFUSAL_INTERVAL_S
    trail.model_received(round=1, upstream="hub", upstream_jurisdiction="EU", sha256="a" * 64)
    events = [r.event for r in read_ledger(path)]
    assert events == ["policy-refused", "policy-refused", "model-received"]
    assert refusals_of(path)[1]["count"] == 4
    clock.now += 1  # a new interval: its first refusal is written at once again
    trail.refused(peer="rogue-1", peer_jurisdiction=None, decision="plan-mismatch", reason="y")
    assert [r["count"] for r in refusals_of(path)] == [1, 4, 1]


def test_the_counter_holds_a_bounded_number_of_windows() -> None:
    clock = Clock()
    counter = RefusalCounter(clock=clock, max_windows=8)
    for i in range(100):
        counter.add(f"peer-{i}", None, "admission", "why")
        counter.add(f"peer-{i}", None, "admission", "why")  # counted in its window
    assert len(counter.drain()) == 8  # the oldest were flushed as new ones opened


def test_peer_text_is_capped_with_a_marker(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    trail = open_trail(path)
    huge = "A" * (1 << 20)
    trail.declined(round=1, peer="site-1", peer_jurisdiction="EU", code="c" * 10_000, reason=huge)
    trail.refused(peer="site-1", peer_jurisdiction="EU", decision="admission", reason=huge)
    trail.close()
    for r in read_ledger(path):
        if r.event in ("task-declined", "policy-refused"):
            reason = str(r.detail["reason"])
            assert reason.startswith("A" * MAX_TEXT) and len(reason) < MAX_TEXT + 64
            assert reason.endswith(f"[{(1 << 20) - MAX_TEXT} more characters cut]")
    assert cap_text("short") == "short"
    assert path.stat().st_size < 8_000


def test_the_ledger_keeps_no_record_list_and_its_memory_does_not_grow(tmp_path: Path) -> None:
    ledger = AuditLedger.open(
        tmp_path / "ledger.jsonl", signer=SIGNER, node="site-1", jurisdiction="EU"
    )

    def append(n: int) -> None:
        for i in range(n):
            ledger.append(event="update-sent", round=i, detail={"reason": "x" * 200})

    append(50)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        append(400)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 100_000  # 400 kept records would take over 400 kB
    assert not [v for v in vars(ledger).values() if isinstance(v, list | tuple | dict | set)]
    assert len(ledger) == 450 + 450 // 64 and len(ledger.records) == len(ledger)
    assert ledger.records[-1] == ledger.last


def test_a_restart_keeps_the_current_rounds_dedupe(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    peer = NodeIdentity("site-1", Role.site, "EU", "fed")
    trail = open_trail(path)
    trail.model_sent(round=7, peer=peer, sha256="b" * 64)
    trail.model_sent(round=7, peer=peer, sha256="b" * 64)
    trail.model_published(
        round=7, sha256="c" * 64, parent=None, contributors=[], sites=[], regions=[], metrics={}
    )
    trail.close()
    again = open_trail(path)
    again.model_sent(round=7, peer=peer, sha256="b" * 64)
    again.model_published(
        round=7, sha256="c" * 64, parent=None, contributors=[], sites=[], regions=[], metrics={}
    )
    again.model_sent(round=8, peer=peer, sha256="b" * 64)  # another round: recorded
    again.close()
    events = Counter(r.event for r in read_ledger(path))
    assert events["model-sent"] == 2 and events["model-published"] == 1


def test_dedupe_memory_covers_only_the_latest_rounds() -> None:
    keys = RecentKeys()
    for round in range(1, 1001):
        for peer in range(20):
            assert keys.add(round, (f"site-{peer}", "a" * 64))
    assert (1000, ("site-3", "a" * 64)) in keys
    assert (1, ("site-3", "a" * 64)) not in keys
    assert len(keys._by_round) == KEEP_ROUNDS


def test_a_zero_byte_download_records_nothing_and_a_repeated_one_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"

    async def scenario() -> None:
        base = {"w": np.zeros((4, 4), dtype=np.float32)}
        eng = make_engine(tmp_path, base, federation="fed", timeout_s=5)
        eng.audit = open_trail(path)
        server = await start_server(
            FederationService(eng, insecure=True), address="127.0.0.1:0", tls=None
        )
        metadata = ((INSECURE_NAME_HEADER, "site-1"),)
        size = eng.model.encoded.size
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = pb_grpc.FederationStub(channel)  # type: ignore[no-untyped-call]
                for offset in (size, size, 0, 0, size // 2):
                    request = pb.DownloadRequest(model_sha256=eng.model.sha256, offset=offset)
                    async for _ in stub.DownloadModel(request, metadata=metadata, timeout=5):
                        pass
        finally:
            await server.stop(0)
            eng.audit.close()

    asyncio.run(scenario())
    sent = [r for r in read_ledger(path) if r.event == "model-sent"]
    assert [(r.peer, r.round) for r in sent] == [("site-1", None)]


@pytest.mark.parametrize("code", ["", "below-k"])
def test_declines_are_each_recorded_also_without_a_code(tmp_path: Path, code: str) -> None:
    path = tmp_path / "ledger.jsonl"
    trail = open_trail(path)
    for round in (1, 2):
        trail.declined(round=round, peer="site-1", peer_jurisdiction="EU", code=code, reason="r")
    trail.close()
    assert [r.round for r in read_ledger(path) if r.event == "task-declined"] == [1, 2]
