"""A stop (SIGTERM cancels the role's main task) is never lost, whatever it lands on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_rounds import make_engine

from fedsov.pki import NodeIdentity, Role


def test_a_stop_that_lands_as_the_round_completes_stops_the_round(tmp_path: Path) -> None:
    """The last update and a SIGTERM in one turn of the event loop: the cancellation
    must still end the round (Python 3.11's ``asyncio.wait_for`` used to drop it, and
    the round, its export and the rest of the federation ran on)."""

    async def scenario() -> None:
        eng = make_engine(tmp_path, num_rounds=1, min_updates=1)
        await eng.subscribe(NodeIdentity("site-a", Role.site, "EU", "fed"))
        run = asyncio.ensure_future(eng.run_round(1, training=eng.schedule.training))
        while eng.current is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the round now waits for its updates
        eng.current.done.set()  # as the last accepted update does
        run.cancel()  # as the SIGTERM handler does
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(scenario())
