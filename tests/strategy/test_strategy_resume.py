"""Strategies with state across rounds survive a crash: a server optimizer's moments come
back with the model they were committed with; a spooled rule's kept updates are read
again from the round's own spool files after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from fedsov.codec import encode, iter_chunks
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.exceptions import StateError
from fedsov.messages import PrivacyReport, TrainingPlan, UpdateHeader
from fedsov.node.engine import Engine, EngineSettings, RoundReport
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.node.state_sqlite import SqliteStateStore
from fedsov.pki import NodeIdentity, Role
from fedsov.strategy import Strategy, create_strategy

BASE = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, np.float32)}
SITES = ("site-a", "site-b", "site-c")
NO_DP = PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)


def engine(
    folder: Path,
    strategy: Strategy,
    *,
    num_rounds: int,
    initial: dict[str, np.ndarray] = BASE,
) -> ScheduledEngine:
    settings = EngineSettings(
        federation="fed",
        min_sites=0,
        min_updates=len(SITES),
        sites_per_round=0,
        round_timeout_s=30.0,
        start_timeout_s=5.0,
        seed=0,
        heartbeat_s=1.0,
    )
    return ScheduledEngine(
        settings,
        Schedule(num_rounds=num_rounds, max_attempts=1, training=TrainingPlan()),
        initial=GlobalModel.from_arrays(initial, round=0, parent=None),
        strategy=strategy,
        store=ModelStore(folder / "models"),
        work_dir=folder / "work",
        state=SqliteStateStore(folder / "state" / "fedsov.db"),
        admission=lambda identity: None,
    )


def update(round: int, site: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([round, site])
    return {k: rng.normal(0.1 * site, 0.2, v.shape).astype(np.float32) for k, v in BASE.items()}


async def chunks(payload: bytes) -> object:
    for chunk in iter_chunks(payload, 16):
        yield bytes(chunk)


async def upload(eng: Engine, site: str) -> None:
    assert eng.current is not None
    record = eng.current.task_for_site(site)
    assert record is not None
    dtypes = {spec.name: spec.numpy_dtype for spec in eng.current.model.manifest.tensors}
    values = update(eng.current.number, SITES.index(site))
    enc = encode({k: v.astype(dtypes[k]) for k, v in values.items()})
    header = UpdateHeader.answering(
        record.task, enc, num_examples=10 + 5 * SITES.index(site), privacy=NO_DP
    )
    await eng.receive_update(
        NodeIdentity(site, Role.site, "EU", "fed"), header, chunks(bytes(enc.payload))
    )  # type: ignore[arg-type]


async def open_round(eng: Engine, number: int) -> None:
    while eng.current is None or eng.current.number != number:
        await asyncio.sleep(0.01)


async def life(
    folder: Path,
    strategy: Strategy,
    *,
    num_rounds: int,
    uploads: list[tuple[int, str]],
    die: bool,
) -> ScheduledEngine:
    """Run ``uploads`` (round, site) in order; then die mid-round, or run to the end."""
    eng = engine(folder, strategy, num_rounds=num_rounds)
    for site in SITES:
        await eng.subscribe(NodeIdentity(site, Role.site, "EU", "fed"))
    run: asyncio.Future[list[RoundReport]] = asyncio.ensure_future(eng.run())
    for number, site in uploads:
        await open_round(eng, number)
        await upload(eng, site)
    if die:
        await open_round(eng, uploads[-1][0])
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    else:
        await run
    eng.state.close()
    return eng


def all_uploads(rounds: int) -> list[tuple[int, str]]:
    return [(r, s) for r in range(1, rounds + 1) for s in SITES]


def final_model(eng: Engine) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in eng.model.arrays().items()}


@pytest.mark.parametrize(
    ("name", "settings"),
    [("fedadam", {"eta": 0.05}), ("fedavgm", {"server_momentum": 0.9})],
)
def test_a_server_optimizer_resumes_with_its_moments(
    tmp_path: Path, name: str, settings: dict[str, float]
) -> None:
    straight = asyncio.run(
        life(
            tmp_path / "straight",
            create_strategy(name, **settings),
            num_rounds=3,
            uploads=all_uploads(3),
            die=False,
        )
    )
    crashed = tmp_path / "crashed"
    # Two rounds committed, one update of round 3 acknowledged: then the process dies.
    asyncio.run(
        life(
            crashed,
            create_strategy(name, **settings),
            num_rounds=3,
            uploads=[*all_uploads(2), (3, "site-a")],
            die=True,
        )
    )
    sidecars = sorted((crashed / "models" / "blobs").glob("*.strategy.safetensors"))
    assert len(sidecars) == 1  # the committed round's moments only
    resumed = asyncio.run(
        life(
            crashed,
            create_strategy(name, **settings),
            num_rounds=3,
            uploads=[(3, "site-b"), (3, "site-c")],
            die=False,
        )
    )
    assert resumed.strategy.state() == {"steps": 3}
    assert resumed.model.round == 3
    for key, value in final_model(resumed).items():
        np.testing.assert_allclose(value, final_model(straight)[key], rtol=0, atol=1e-7)


def test_moments_that_do_not_fit_the_model_are_refused(tmp_path: Path) -> None:
    strategy = create_strategy("fedadam")
    strategy.restore_arrays({"m/w": np.zeros(3, np.float32), "v/w": np.zeros(3, np.float32)})
    model = GlobalModel.from_arrays(BASE, round=0, parent=None)
    with pytest.raises(StateError, match=r"stored moment m/w is float32\[3\]"):
        strategy.start_round(model.manifest)


def test_a_spooled_rule_reads_its_kept_updates_after_a_restart(tmp_path: Path) -> None:
    asyncio.run(
        life(
            tmp_path,
            create_strategy("fedmedian", window=3),
            num_rounds=1,
            uploads=[(1, "site-a"), (1, "site-b")],
            die=True,
        )
    )
    spool = tmp_path / "work" / "spool" / "round-0001-1"
    assert sorted(p.suffix for p in spool.iterdir()) == [".update", ".update"]
    eng = asyncio.run(
        life(
            tmp_path,
            create_strategy("fedmedian", window=3),
            num_rounds=1,
            uploads=[(1, "site-c")],
            die=False,
        )
    )
    median = {
        k: BASE[k] + np.median([update(1, i)[k] for i in range(len(SITES))], axis=0) for k in BASE
    }
    for key, value in final_model(eng).items():
        np.testing.assert_allclose(value, median[key], rtol=0, atol=1e-6)
    assert not spool.exists()  # the kept updates went with the round's spool
