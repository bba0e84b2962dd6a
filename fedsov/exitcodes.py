"""Exit statuses of the ``fedsov`` roles and ``fedsov simulate``: one per kind of stop.

Documented in docs/operations.md; scripts and supervisors (systemd, Kubernetes) read
them. A stop asked for by a signal follows the shell's 128 + signal number, so a
supervisor sees a SIGTERM stop as a stop, not a success.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["GUARDRAIL_EXIT", "ExitCode"]


class ExitCode(IntEnum):
    """What a ``fedsov`` process's exit status says."""

    COMPLETED = 0  # every round ran (a site: the federation finished)
    FAILED = 1  # the federation failed (a round failed max_attempts times, a stall)
    USAGE = 2  # a wrong config, path, certificate or argument: the message says what
    WALL_TIME = 3  # guardrail: [guardrails] max_wall_time_s
    COMPUTE_BUDGET = 4  # guardrail: site or jurisdiction training seconds
    PRIVACY_CEILING = 5  # guardrail: a jurisdiction's ε ceiling
    NO_IMPROVEMENT = 6  # guardrail: no better evaluation metric for N rounds
    REGRESSION = 7  # guardrail: the metric fell more than X below its best round
    OPERATOR_STOP = 8  # `fedsov stop`: an operator stopped the federation
    SIGINT = 130  # 128 + 2
    SIGTERM = 143  # 128 + 15


GUARDRAIL_EXIT: dict[str, ExitCode] = {
    "wall-time": ExitCode.WALL_TIME,
    "compute-budget": ExitCode.COMPUTE_BUDGET,
    "privacy-ceiling": ExitCode.PRIVACY_CEILING,
    "no-improvement": ExitCode.NO_IMPROVEMENT,
    "regression": ExitCode.REGRESSION,
}
"""Each guardrail rule kind (its name in summaries and the audit ledger) and its exit."""
