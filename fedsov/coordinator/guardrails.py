"""Stop rules: has the federation passed a limit its ``[guardrails]`` set? Pure.

``Guardrails.check`` reads the round reports (what the coordinator committed) and the
run's wall time, and names the first rule that trips, in this order: privacy-ceiling,
compute-budget, wall-time, regression, no-improvement. What each rule reads:

- privacy-ceiling: per jurisdiction, the worst ε a participant of it reported with an
  accepted update (parallel composition over disjoint sites: docs/privacy.md). A site
  without DP counts as ε = ∞; a region without site-level DP reports no ε of its own
  (its sites' sample-level ε stays in the region, held to the sites' own budgets).
- compute-budget: ``training_seconds`` of accepted updates, each bounded by what the
  coordinator saw (the round's duration, times the sites behind a region's update),
  summed per site the coordinator serves directly and per jurisdiction (a region's
  sum counts in the region's jurisdiction).
- no-improvement, regression: ``metric`` of the coordinator's evaluation of each
  completed round's model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fedsov.config import GuardrailSettings
from fedsov.exitcodes import GUARDRAIL_EXIT, ExitCode
from fedsov.node.engine import TRAINING_SECONDS, RoundReport, SiteResult

__all__ = ["OPERATOR", "Guardrails", "Trip", "signal_stop"]

OPERATOR = "operator"  # the kind of a stop an operator asked for (``fedsov stop``)
UNKNOWN = "unknown jurisdiction"  # a participant nobody vouched for: only "*" limits apply

_ACCEPTED = "accepted"


@dataclass(frozen=True)
class Trip:
    """Why the federation stops: a guardrail ``kind`` (a key of GUARDRAIL_EXIT) or
    ``"operator"``, and what happened, in words."""

    kind: str
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in GUARDRAIL_EXIT and self.kind != OPERATOR:
            known = ", ".join([*GUARDRAIL_EXIT, OPERATOR])
            raise ValueError(f"no stop of kind {self.kind!r} (known: {known})")

    @property
    def exit_code(self) -> ExitCode:
        return GUARDRAIL_EXIT.get(self.kind, ExitCode.OPERATOR_STOP)

    @property
    def status(self) -> str:
        """The summary's status (and the reason sites are told)."""
        if self.kind == OPERATOR:
            return f"stopped by {OPERATOR}: {self.detail}"
        return f"stopped by guardrail {self.kind}: {self.detail}"

    def to_json(self) -> dict[str, object]:
        """``summary["stop"]``."""
        return {"kind": self.kind, "detail": self.detail, "exit_code": int(self.exit_code)}


def _num(value: float) -> str:
    return f"{value:.4g}"


def _is_region(result: SiteResult) -> bool:
    return tuple(result.contributors) not in ((), (result.site,))


def _training_seconds(report: RoundReport, result: SiteResult) -> float:
    """What ``result`` claims, within what the coordinator could observe: no site trains
    longer than the round was open (a region: once per site behind it)."""
    claimed = result.metrics.get(TRAINING_SECONDS, 0.0)
    if not math.isfinite(claimed) or claimed <= 0.0:
        return 0.0
    behind = max(1, len(result.contributors))
    return min(claimed, max(0.0, report.seconds) * behind)


class Guardrails:
    """The rules of ``settings``, with ``jurisdiction_of`` naming each participant's
    jurisdiction (None: not known, so only a ``"*"`` entry of a table counts it)."""

    def __init__(
        self, settings: GuardrailSettings, jurisdiction_of: Callable[[str], str | None]
    ) -> None:
        self.settings = settings
        self.jurisdiction_of = jurisdiction_of

    @property
    def wall_time_s(self) -> float | None:
        return self.settings.max_wall_time_s

    def check(self, reports: Sequence[RoundReport], elapsed_s: float) -> Trip | None:
        """The first rule that trips after ``reports``, ``elapsed_s`` into the run."""
        after = f"after round {reports[-1].round}" if reports else "before round 1"
        return (
            self._privacy(reports, after)
            or self._compute(reports, after)
            or self.wall_time(elapsed_s, after)
            or self._regression(reports)
            or self._no_improvement(reports)
        )

    def wall_time(self, elapsed_s: float, when: str) -> Trip | None:
        limit = self.settings.max_wall_time_s
        if limit is None or elapsed_s < limit:
            return None
        return Trip(
            "wall-time",
            f"the federation ran {elapsed_s:.1f} s, its limit max_wall_time_s is "
            f"{_num(limit)} s ({when})",
        )

    # ----- privacy ------------------------------------------------------------------

    def _privacy(self, reports: Sequence[RoundReport], after: str) -> Trip | None:
        ceilings = self.settings.epsilon_ceiling
        if not ceilings:
            return None
        worst: dict[str, tuple[float, str, str]] = {}  # jurisdiction: (ε, who, what)
        for report in reports:
            for result in report.sites:
                found = self._epsilon(result)
                if found is None:
                    continue
                jurisdiction = self.jurisdiction_of(result.site) or UNKNOWN
                if found[0] > worst.get(jurisdiction, (-1.0, "", ""))[0]:
                    worst[jurisdiction] = (*found, result.site)
        for jurisdiction, (epsilon, what, who) in sorted(worst.items()):
            ceiling = GuardrailSettings.limit(ceilings, jurisdiction)
            if ceiling is not None and epsilon > ceiling:
                shown = "∞ (no DP)" if math.isinf(epsilon) else f"{epsilon:.3g}"
                return Trip(
                    "privacy-ceiling",
                    f"{jurisdiction}'s worst {what} ε {shown} ({who}) passed its ceiling "
                    f"{_num(ceiling)} {after}",
                )
        return None

    @staticmethod
    def _epsilon(result: SiteResult) -> tuple[float, str] | None:
        """(ε, "site" or "region") an accepted update reported; None when it claims none."""
        if result.status != _ACCEPTED:
            return None
        p, region = result.privacy, _is_region(result)
        if p is None or not p.enabled:
            return None if region else (math.inf, "site")
        return p.epsilon, "region" if region else "site"

    # ----- compute ------------------------------------------------------------------

    def _compute(self, reports: Sequence[RoundReport], after: str) -> Trip | None:
        s = self.settings
        if s.max_site_training_s is None and not s.max_jurisdiction_training_s:
            return None
        per_site: dict[str, float] = {}
        per_jurisdiction: dict[str, float] = {}
        for report in reports:
            for result in report.sites:
                if result.status != _ACCEPTED:
                    continue
                seconds = _training_seconds(report, result)
                if not _is_region(result):
                    per_site[result.site] = per_site.get(result.site, 0.0) + seconds
                jurisdiction = self.jurisdiction_of(result.site) or UNKNOWN
                per_jurisdiction[jurisdiction] = per_jurisdiction.get(jurisdiction, 0.0) + seconds
        if s.max_site_training_s is not None:
            for site, total in sorted(per_site.items()):
                if total > s.max_site_training_s:
                    return Trip(
                        "compute-budget",
                        f"site {site} reported {total:.1f} training seconds, past "
                        f"max_site_training_s = {_num(s.max_site_training_s)} {after}",
                    )
        for jurisdiction, total in sorted(per_jurisdiction.items()):
            limit = GuardrailSettings.limit(s.max_jurisdiction_training_s, jurisdiction)
            if limit is not None and total > limit:
                return Trip(
                    "compute-budget",
                    f"{jurisdiction}'s sites reported {total:.1f} training seconds, past "
                    f"its max_jurisdiction_training_s {_num(limit)} {after}",
                )
        return None

    # ----- the evaluation metric ----------------------------------------------------

    def _values(self, reports: Sequence[RoundReport]) -> list[tuple[int, float]]:
        """(round, metric) of each completed round that measured it, higher = better."""
        sign = 1.0 if self.settings.mode == "max" else -1.0
        out = []
        for r in reports:
            value = r.metrics.get(self.settings.metric) if r.completed else None
            if value is not None and math.isfinite(value):
                out.append((r.round, sign * value))
        return out

    def _shown(self, value: float) -> str:
        return _num(value if self.settings.mode == "max" else -value)

    def _regression(self, reports: Sequence[RoundReport]) -> Trip | None:
        limit = self.settings.max_drop
        values = self._values(reports)
        if limit is None or not values:
            return None
        best_round, best = max(values, key=lambda rv: (rv[1], -rv[0]))
        last_round, last = values[-1]
        if best - last <= limit:
            return None
        metric = self.settings.metric
        worse = "below" if self.settings.mode == "max" else "above"
        return Trip(
            "regression",
            f"{metric} {self._shown(last)} after round {last_round} is {_num(best - last)} "
            f"{worse} the best, {self._shown(best)} after round {best_round} "
            f"(max_drop {_num(limit)})",
        )

    def _no_improvement(self, reports: Sequence[RoundReport]) -> Trip | None:
        patience = self.settings.no_improvement_rounds
        values = self._values(reports)
        if patience is None or not values:
            return None
        min_delta = self.settings.min_delta
        best_round, best = values[0]
        since = 0
        for number, value in values[1:]:
            if value > best + min_delta:
                best_round, best, since = number, value, 0
            else:
                since += 1
        if since < patience:
            return None
        metric = self.settings.metric
        return Trip(
            "no-improvement",
            f"{metric} has not improved on {self._shown(best)} (round {best_round}) by more "
            f"than min_delta {_num(min_delta)} for {since} rounds "
            f"(no_improvement_rounds {patience})",
        )


def signal_stop(signal_name: str) -> dict[str, object]:
    """``summary["stop"]`` of a run a signal stopped (SIGTERM: 143, SIGINT: 130); state is
    committed and a restart resumes it."""
    code = ExitCode.__members__.get(signal_name, ExitCode.SIGTERM)
    return {"kind": "signal", "detail": signal_name, "exit_code": int(code)}
