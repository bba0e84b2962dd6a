"""Finishing: a participant whose stream ends right after Finished counts as told."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from test_rounds import make_engine

from fedsov.messages import Finished
from fedsov.node.engine import RoundReport, SiteResult
from fedsov.pki import NodeIdentity, Role


def _last_round_of(*sites: str) -> RoundReport:
    results = tuple(SiteResult(s, f"t-{s}", "accepted", "", 1, None, {}) for s in sites)
    return RoundReport(1, 1, True, "m", 0.1, {}, results)


def test_a_stream_closed_at_finished_is_told_and_linger_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The site closes its task stream as soon as it reads Finished, so the transport
    closes the engine's event stream at that very yield: the engine must not wait out
    its grace for a participant that was told (it used to, 15 s every run)."""

    async def scenario() -> None:
        eng = make_engine(tmp_path, num_rounds=1, min_updates=1)
        eng.reports = [_last_round_of("site-a", "site-b")]
        streams = [
            await eng.subscribe(NodeIdentity(s, Role.site, "EU", "fed"))
            for s in ("site-a", "site-b")
        ]
        eng.finish("done")
        for stream in streams:
            assert isinstance(await anext(stream), Finished)  # type: ignore[call-overload]
            await stream.aclose()  # type: ignore[attr-defined]
        await eng.linger(20.0)

    with caplog.at_level(logging.WARNING, logger="fedsov.node"):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if "without telling" in r.getMessage()]


def test_linger_names_who_was_never_told(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        eng = make_engine(tmp_path, num_rounds=1, min_updates=1)
        eng.reports = [_last_round_of("site-a", "site-gone")]
        stream = await eng.subscribe(NodeIdentity("site-a", Role.site, "EU", "fed"))
        eng.finish("done")
        assert isinstance(await anext(stream), Finished)  # type: ignore[call-overload]
        await stream.aclose()  # type: ignore[attr-defined]
        await eng.linger(0.2)

    with caplog.at_level(logging.WARNING, logger="fedsov.node"):
        asyncio.run(scenario())
    (warning,) = [r for r in caplog.records if "without telling" in r.getMessage()]
    assert "site-gone" in warning.getMessage() and "site-a" not in warning.getMessage()
