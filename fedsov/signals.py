"""Graceful shutdown: SIGTERM or SIGINT cancels a role's main task, which cleans up.

Cancellation unwinds the role the way any error does: uploads in flight are rolled
back out of the running sums (the peer may send them again), the state store holds
only committed rounds, servers stop with a short grace, summaries are written.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Stopped", "until_signalled"]

T = TypeVar("T")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """The process was asked to stop (SIGTERM or SIGINT) and did, cleanly."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"stopped by {signal_name}")
        self.signal_name = signal_name


async def until_signalled(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main``; on SIGTERM/SIGINT cancel it, let it unwind, and raise Stopped."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        received.append(sig)
        task.cancel()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        return await task
    except asyncio.CancelledError:
        if received:
            raise Stopped(received[0].name) from None
        raise
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
