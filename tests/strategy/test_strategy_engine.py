"""What a strategy asks of the engine: a training plan for every task, a minimum of updates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from test_strategy_resume import BASE, SITES, engine, open_round, upload

from fedsov.exceptions import FedsovError
from fedsov.pki import NodeIdentity, Role
from fedsov.strategy import Strategy, create_strategy


async def first_round(
    folder: Path, strategy: Strategy, initial: dict[str, np.ndarray] = BASE
) -> tuple[list[float], str]:
    """The proximal μ of round 1's tasks, and how the federation ended."""
    eng = engine(folder, strategy, num_rounds=1, initial=initial)
    for site in SITES:
        await eng.subscribe(NodeIdentity(site, Role.site, "EU", "fed"))
    run = asyncio.ensure_future(eng.run())
    await open_round(eng, 1)
    assert eng.current is not None
    mus = [record.task.plan.proximal_mu for record in eng.current.tasks.values()]
    for site in SITES:
        await upload(eng, site)
    try:
        await run
        ended = "completed"
    except FedsovError as exc:
        ended = str(exc)
    eng.state.close()
    return mus, ended


def test_fedprox_puts_its_mu_in_every_task(tmp_path: Path) -> None:
    mus, ended = asyncio.run(first_round(tmp_path, create_strategy("fedprox", proximal_mu=0.5)))
    assert (mus, ended) == ([0.5] * len(SITES), "completed")
    mus, _ = asyncio.run(first_round(tmp_path / "plain", create_strategy("fedavg")))
    assert mus == [0.0] * len(SITES)


def test_a_round_with_fewer_updates_than_the_rule_needs_fails_saying_so(tmp_path: Path) -> None:
    bulyan = create_strategy("bulyan", num_malicious_nodes=1)  # needs 4f + 3 = 7
    _, ended = asyncio.run(first_round(tmp_path, bulyan))
    assert ended == "round 1 failed 1 times: bulyan needs at least 7 updates, the round got 3"


def test_a_server_step_that_overflows_leaves_the_moments_as_committed(tmp_path: Path) -> None:
    """float16 overflows under a huge server rate: the round fails, and the moments it
    stepped go back to the committed ones (none yet), as a restart would find them."""
    strategy = create_strategy("fedavgm", server_learning_rate=1e6, server_momentum=0.5)
    half = {k: v.astype(np.float16) for k, v in BASE.items()}
    _, ended = asyncio.run(first_round(tmp_path, strategy, half))
    assert "is not finite" in ended
    assert (strategy.state(), strategy.arrays()) == ({"steps": 0}, {})
