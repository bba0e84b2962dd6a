"""What one run measured, and the table of medians and ratios over all runs."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cases import Case

__all__ = ["RunResult", "TlsLimit", "markdown"]

SYSTEMS = ("flower", "fedsov")


@dataclass
class RunResult:
    """One run of one system on one case. Times are wall-clock (``time.time()``)."""

    system: str
    case: str
    pair: int
    why: str = ""  # why it did not finish; empty when it did
    round_closes: list[float] = field(default_factory=list)  # when each round closed
    server_exit: float | None = None  # when the server's run ended (process exit)
    startup_s: list[float] = field(default_factory=list)  # per site: spawn -> joined
    site_rss_mb: float | None = None  # one site's process tree, peak (VmHWM)
    site_self_rss_mb: list[float] = field(default_factory=list)  # each site's ru_maxrss
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.why

    @property
    def round_s(self) -> list[float]:
        """Steady-state round times: close-to-close, rounds after the first."""
        c = self.round_closes
        return [b - a for a, b in itertools.pairwise(c)]

    @property
    def after_last_close_s(self) -> float | None:
        if self.server_exit is None or not self.round_closes:
            return None
        return self.server_exit - self.round_closes[-1]

    def summary(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "case": self.case,
            "pair": self.pair,
            "finished": self.ok,
            "why": self.why,
            "round_s": self.round_s,
            "round_s_median": _median(self.round_s),
            "after_last_close_s": self.after_last_close_s,
            "startup_s_median": _median(self.startup_s),
            "startup_s_max": max(self.startup_s, default=None),
            "site_rss_mb": self.site_rss_mb,
            "site_self_rss_mb_max": max(self.site_self_rss_mb, default=None),
            "wall_s": round(self.wall_s, 2),
            "round_closes": self.round_closes,
            "server_exit": self.server_exit,
        }


@dataclass(frozen=True)
class TlsLimit:
    megabytes: int
    tls_s: float
    tcp_s: float
    grpc_s: float
    disk_s: float

    def lines(self) -> list[str]:
        mb = self.megabytes
        return [
            f"- TLS 1.3 loopback limit (Python ssl, one stream, 1 MiB writes): {mb} MB in "
            f"{self.tls_s:.3f} s = {mb / self.tls_s:.0f} MB/s",
            f"- plain TCP loopback: {mb} MB in {self.tcp_s:.3f} s = {mb / self.tcp_s:.0f} MB/s",
            f"- gRPC floor (grpc.aio, mTLS, 1 MiB messages without protobuf, two processes): "
            f"{mb // 2} MB up + {mb // 2} MB down in {self.grpc_s:.3f} s = "
            f"{mb / self.grpc_s:.0f} MB/s",
            f"- durable disk write (write + fsync, the runs' disk): {mb} MB in "
            f"{self.disk_s:.3f} s = {mb / self.disk_s:.0f} MB/s; each round writes every "
            "accepted update (its spool) and the new model",
        ]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _runs(results: Sequence[RunResult], case: str, system: str) -> list[RunResult]:
    return [r for r in results if r.case == case and r.system == system]


def _cell(runs: Sequence[RunResult], value: float | None, unit: str, *, why: bool) -> str:
    if not runs:
        return "not run"
    done = [r for r in runs if r.ok]
    if not done or value is None:
        return f"did not finish ({runs[-1].why})" if why else "did not finish"
    text = f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return text if len(done) == len(runs) else f"{text} ({len(done)} of {len(runs)} runs)"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.3g}" if a and b is not None else "-"


def _metric(runs: Sequence[RunResult], pick: str) -> float | None:
    """The median over finished runs of each run's own figure ``pick``."""
    values = [r.summary()[pick] for r in runs if r.ok]
    return _median([v for v in values if v is not None])


ROWS = (
    ("round_s_median", "{label}", "s"),
    ("after_last_close_s", "{name}: last round closed → server exited", "s"),
    ("startup_s_median", "{name}: site start-up, spawn → joined (median site)", "s"),
    ("site_rss_mb", "{name}: one site's peak RSS", "MB"),
)


def markdown(cases: Sequence[Case], results: Sequence[RunResult], tls: TlsLimit | None) -> str:
    """One table: a row per case and measure, medians over runs, fedsov/Flower ratio."""
    lines = ["| case | Flower | fedsov | fedsov / Flower |", "|---|---|---|---|"]
    for case in cases:
        flower, fedsov = _runs(results, case.name, "flower"), _runs(results, case.name, "fedsov")
        for i, (pick, label, unit) in enumerate(ROWS):
            a, b = _metric(flower, pick), _metric(fedsov, pick)
            row = label.format(label=case.label, name=case.name)
            cells = [_cell(runs, v, unit, why=i == 0) for runs, v in ((flower, a), (fedsov, b))]
            lines.append(f"| {row} | {cells[0]} | {cells[1]} | {_ratio(a, b)} |")
    lines.append("")
    lines += tls.lines() if tls else []
    lines += [
        "- fedsov: a real `fedsov coordinator` with mTLS, one no-op site process per site "
        "(downloads each round's model, uploads a zero delta). Flower: `flower-superlink` "
        "+ one `flower-supernode` per site + `flwr run` of a no-op ClientApp and a FedAvg "
        "ServerApp, insecure (Flower's TLS is server-side only).",
        "- Round: median of close-to-close times after the first round (fedsov: the "
        "coordinator's `round N closed` log lines; Flower: the ServerApp's aggregate "
        "time). Server exit: fedsov's coordinator process; Flower's `flwr run` returning.",
        "- Site RSS: peak (VmHWM) of one site's process tree, sampled every 100 ms; a "
        "Flower node is a SuperNode + SuperExec + a ClientApp process per message.",
    ]
    return "\n".join(lines) + "\n"
