"""An engine that stops mid-round resumes from its state store: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from test_rounds import chunks, delta, expected, make_engine

from fedsov.codec import encode
from fedsov.exceptions import ConfigError, LateUpdate
from fedsov.messages import PrivacyReport, UpdateHeader
from fedsov.node.engine import Engine, RoundReport
from fedsov.node.state_sqlite import SqliteStateStore
from fedsov.pki import NodeIdentity, Role

SITES = ("site-a", "site-b")


def engine(tmp_path: Path, *, seed: int = 0) -> Engine:
    return make_engine(
        tmp_path,
        num_rounds=2,
        min_updates=2,
        seed=seed,
        state=SqliteStateStore(tmp_path / "state" / "fedsov.db"),
    )


def identity(site: str) -> NodeIdentity:
    return NodeIdentity(site, Role.site, "EU", "fed")


async def subscribe_all(eng: Engine) -> None:
    for site in SITES:
        await eng.subscribe(identity(site))


async def started(tmp_path: Path) -> tuple[Engine, asyncio.Future[list[RoundReport]]]:
    """An engine on the store in ``tmp_path``, every site subscribed, its first round open."""
    eng = engine(tmp_path)
    await subscribe_all(eng)
    run = asyncio.ensure_future(eng.run())
    while eng.current is None:
        await asyncio.sleep(0.01)
    return eng, run


async def died(eng: Engine, run: asyncio.Future[list[RoundReport]]) -> None:
    """The process stops mid-round (as a kill leaves it: committed state only)."""
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    eng.state.close()


async def upload(eng: Engine, site: str, value: float, n: int) -> None:
    assert eng.current is not None
    task = eng.current.task_for_site(site)
    assert task is not None
    enc = encode(delta(value))
    header = UpdateHeader(
        task_id=task.task.task_id,
        round=eng.current.number,
        manifest=enc.manifest,
        num_examples=n,
        payload_size=enc.size,
        payload_sha256=enc.sha256,
        base_model_sha256=eng.current.model.sha256,
        privacy=PrivacyReport(enabled=False, epsilon=0.0, delta=0.0),
    )
    await eng.receive_update(identity(site), header, chunks(enc.payload))


def test_a_round_reopens_with_its_acknowledged_updates(tmp_path: Path) -> None:
    async def first_life() -> None:
        eng, run = await started(tmp_path)
        await upload(eng, "site-a", 1.0, 10)  # acknowledged, then the process "dies"
        await died(eng, run)

    async def second_life() -> Engine:
        eng, run = await started(tmp_path)
        rnd = eng.current
        assert rnd.number == 1
        accepted = sorted(r.site for r in rnd.tasks.values() if r.status == "accepted")
        assert accepted == ["site-a"]
        await upload(eng, "site-b", 4.0, 30)
        while eng.current is None or eng.current.number != 2:
            await asyncio.sleep(0.01)
        with pytest.raises(LateUpdate, match="round 1 is closed"):
            await upload_late(eng)
        for site in SITES:
            await upload(eng, site, 0.0, 1)
        await run
        return eng

    async def upload_late(eng: Engine) -> None:
        enc = encode(delta(9.0))
        header = UpdateHeader(
            "x",
            1,
            enc.manifest,
            1,
            enc.size,
            enc.sha256,
            "",
            PrivacyReport(enabled=False, epsilon=0.0, delta=0.0),
        )
        await eng.receive_update(identity("site-a"), header, chunks(enc.payload))

    asyncio.run(first_life())
    eng = asyncio.run(second_life())
    after_round_1 = expected([(1.0, 10), (4.0, 30)])
    model_1 = eng.store.load(
        eng.reports[0].model_sha256, round=1, parent=None, manifest=eng.model.manifest
    )
    for name, value in model_1.arrays().items():
        np.testing.assert_allclose(value, after_round_1[name], atol=1e-6)
    assert [r.round for r in eng.reports] == [1, 2]
    assert eng.reports[0].population == SITES  # as stored when round 1 first opened
    receipts = eng.state.receipts(1, 1)
    assert sorted(r.site for r in receipts) == ["site-a", "site-b"]
    assert not (tmp_path / "work" / "spool" / "round-0001-1").exists()  # cleaned after commit


def test_a_store_of_another_config_is_refused(tmp_path: Path) -> None:
    async def life(seed: int) -> None:
        eng = engine(tmp_path, seed=seed)
        try:
            await asyncio.wait_for(eng.run(), 1.0)
        except TimeoutError:
            pass
        finally:
            eng.state.close()

    asyncio.run(life(0))
    with pytest.raises(ConfigError, match="another model, seed or strategy"):
        asyncio.run(life(1))


def test_a_decline_survives_a_restart(tmp_path: Path) -> None:
    """A site declined round 1, then the coordinator died: the re-opened round still
    holds that refusal with its reason (the site will not answer again)."""

    async def first_life() -> None:
        eng, run = await started(tmp_path)
        task = eng.current.task_for_site("site-b")
        assert task is not None
        eng.decline(
            identity("site-b"),
            task_id=task.task.task_id,
            round=1,
            code="budget-exhausted",
            reason="round 1 would take ε to 3.2 > budget 3",
        )
        await died(eng, run)

    async def second_life() -> tuple[str, str]:
        eng, run = await started(tmp_path)
        record = eng.current.task_for_site("site-b")
        assert record is not None
        outcome = (str(record.status), record.reason)
        await died(eng, run)
        return outcome

    asyncio.run(first_life())
    status, reason = asyncio.run(second_life())
    assert status == "declined"
    assert reason == "budget-exhausted: round 1 would take ε to 3.2 > budget 3"
