"""Refusals counted, not written one by one: a flood of refused calls costs a few records.

The first refusal of a (peer, decision) is written at once (an auditor sees it even
if the node dies next); the ones after it, for ``interval_s``, are counted and written
as ONE record with their count, the first and last time and one sample reason, at the
first event after the interval ends, or on close. No thread: nothing runs between
events.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_OPEN_WINDOWS", "REFUSAL_INTERVAL_S", "RefusalCount", "RefusalCounter"]

REFUSAL_INTERVAL_S = 60.0
MAX_OPEN_WINDOWS = 1024  # (peer, decision) pairs counted at once; the oldest is flushed first

_Key = tuple[str, str]


@dataclass(frozen=True)
class RefusalCount:
    """``count`` refusals of ``peer`` for ``decision``, from ``first`` to ``last`` (Unix s)."""

    peer: str
    peer_jurisdiction: str | None
    decision: str
    reason: str
    count: int
    first: float
    last: float

    def detail(self) -> dict[str, object]:
        """The record's detail: the sample reason, the count and the time span."""
        return {
            "reason": self.reason,
            "count": self.count,
            "first": _rfc3339(self.first),
            "last": _rfc3339(self.last),
        }


@dataclass
class _Window:
    opened: float
    peer_jurisdiction: str | None
    reason: str = ""
    count: int = 0
    first: float = 0.0
    last: float = 0.0


class RefusalCounter:
    """Counts refusals per (peer, decision) per interval; says what to write when."""

    def __init__(
        self,
        *,
        interval_s: float = REFUSAL_INTERVAL_S,
        max_windows: int = MAX_OPEN_WINDOWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval_s = interval_s
        self.max_windows = max_windows
        self.clock = clock
        self._windows: dict[_Key, _Window] = {}

    def add(
        self, peer: str, peer_jurisdiction: str | None, decision: str, reason: str
    ) -> list[RefusalCount]:
        """Count one refusal; returns what to write now (due counts, then this one if
        it is the first of its window)."""
        now = self.clock()
        out = self.due()
        key = (peer, decision)
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self.max_windows:
                out += self._flush([min(self._windows, key=lambda k: self._windows[k].opened)])
            self._windows[key] = _Window(opened=now, peer_jurisdiction=peer_jurisdiction)
            return [*out, RefusalCount(peer, peer_jurisdiction, decision, reason, 1, now, now)]
        if not window.count:
            window.reason, window.first = reason, now
        window.count += 1
        window.last = now
        return out

    def due(self) -> list[RefusalCount]:
        """The counts of the windows that ended (removed; empty ones write nothing)."""
        now = self.clock()
        ended = [k for k, w in self._windows.items() if now - w.opened >= self.interval_s]
        return self._flush(ended)

    def drain(self) -> list[RefusalCount]:
        """Every count still open (on close)."""
        return self._flush(list(self._windows))

    def _flush(self, keys: list[_Key]) -> list[RefusalCount]:
        out = []
        for peer, decision in keys:
            w = self._windows.pop((peer, decision))
            if w.count:
                out.append(
                    RefusalCount(
                        peer, w.peer_jurisdiction, decision, w.reason, w.count, w.first, w.last
                    )
                )
        return out


def _rfc3339(t: float) -> str:
    return (
        dt.datetime.fromtimestamp(t, dt.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )
