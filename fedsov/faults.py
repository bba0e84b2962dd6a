"""Crash points: a test seam that kills or stops this process at a named moment of a round.

``FEDSOV_CRASH_AT=POINT@ROUND[#N]`` makes the N-th (default: first) arrival at
``POINT`` in round ``ROUND`` send this process SIGKILL: no handler runs, nothing is
flushed, exactly as if the machine lost power there. ``FEDSOV_STOP_AT`` does the
same with SIGTERM: a graceful stop at a known moment. Crash-recovery tests use
them to stop a coordinator or aggregator at each point of a round (``POINTS``) and
a site mid-upload (``SITE_POINTS``); unset, they cost two environment lookups.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "POINTS", "SITE_POINTS", "STOP_ENV", "crash_point"]

ENV = "FEDSOV_CRASH_AT"
STOP_ENV = "FEDSOV_STOP_AT"

POINTS = (
    "round-opened",  # the round and its tasks are stored; no task was pushed yet
    "tasks-pushed",  # tasks are on their way to the sites
    "upload-folding",  # an upload's first chunk is folded into the running sum
    "upload-spooled",  # an upload is complete and fsynced; no receipt yet
    "upload-acknowledged",  # the receipt is stored; the site has not heard back
    "round-closing",  # the deadline passed or every site answered; no model yet
    "model-written",  # the new model's blob is on disk; its row is not
    "round-committed",  # the round's transaction committed; the spool is not cleaned
)
SITE_POINTS = ("site-uploading",)  # a site's upload: the header left, the payload has not

_hits: dict[tuple[str, str, int], int] = {}


def crash_point(point: str, round: int) -> None:
    """Signal this process if ``FEDSOV_CRASH_AT``/``FEDSOV_STOP_AT`` names this arrival."""
    for env, sig in ((ENV, signal.SIGKILL), (STOP_ENV, signal.SIGTERM)):
        spec = os.environ.get(env)
        if not spec:
            continue
        where, _, nth = spec.partition("#")
        name, _, at_round = where.partition("@")
        if name != point or at_round != str(round):
            continue
        key = (env, point, round)
        _hits[key] = _hits.get(key, 0) + 1
        if _hits[key] == int(nth or 1):
            os.kill(os.getpid(), sig)
