"""``[guardrails]``: stop rules that end a federation cleanly (docs/operations.md).

Every rule is off unless its key is set. A coordinator reads the table from its own
config, else from its federation plan; ``fedsov.coordinator.guardrails`` judges it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from fedsov.config.base import Int, KeyProblem, Number, Section, Str, one_of, section

__all__ = ["EVERY_JURISDICTION", "GuardrailSettings"]

EVERY_JURISDICTION = "*"
"""The key of a per-jurisdiction table that applies to every jurisdiction not named."""

_JURISDICTION = re.compile(r"[A-Z]{2,8}")  # as fedsov.pki.identity (a layer beside this one)

Positive = Annotated[Number, Field(gt=0.0)]


def _per_jurisdiction(value: object) -> object:
    """A number is the limit of every jurisdiction: ``{"*": number}``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {EVERY_JURISDICTION: value}
    return value


def _jurisdiction_keys(table: dict[str, float]) -> dict[str, float]:
    for key in table:
        if key != EVERY_JURISDICTION and not _JURISDICTION.fullmatch(key):
            raise ValueError(
                f"{key!r} is not a jurisdiction (2 to 8 capital letters, as in the "
                f'certificates), or "{EVERY_JURISDICTION}" for every other one'
            )
    return table


PerJurisdiction = Annotated[
    dict[Str, Positive],
    BeforeValidator(_per_jurisdiction),
    AfterValidator(_jurisdiction_keys),
]


@section
class GuardrailSettings(Section):
    """When a coordinator stops the federation before its last round (all optional).

    ``max_wall_time_s``: seconds this coordinator run may take (a restart starts again).
    ``max_site_training_s``: training seconds one site may report in all (sites the
    coordinator serves directly). ``max_jurisdiction_training_s``: training seconds of
    all the sites of a jurisdiction, regions' sites included (a number: every
    jurisdiction; a table: per jurisdiction, ``"*"`` for the rest). ``epsilon_ceiling``:
    per jurisdiction, the largest ε its worst participant may report. On ``metric`` of
    the coordinator's evaluation (``mode`` "max": higher is better, "min": lower):
    ``no_improvement_rounds`` completed rounds without beating the best by more than
    ``min_delta``; ``max_drop``: the latest round worse than the best by more than this.
    """

    SECTION = "guardrails"
    max_wall_time_s: Positive | None = None
    max_site_training_s: Positive | None = None
    max_jurisdiction_training_s: PerJurisdiction = dataclasses.field(default_factory=dict)
    epsilon_ceiling: PerJurisdiction = dataclasses.field(default_factory=dict)
    metric: Str = "accuracy"
    mode: Annotated[Str, one_of("max", "min")] = "max"
    no_improvement_rounds: Annotated[Int, Field(ge=1)] | None = None
    min_delta: Annotated[Number, Field(ge=0.0)] = 0.0
    max_drop: Annotated[Number, Field(ge=0.0)] | None = None

    def __post_init__(self) -> None:
        if not self.metric:
            raise KeyProblem("metric", "names no metric of the coordinator's evaluation")

    @property
    def watches_metric(self) -> bool:
        """Whether a rule reads the evaluation metric (no-improvement, regression)."""
        return self.no_improvement_rounds is not None or self.max_drop is not None

    def jurisdictions(self) -> set[str]:
        """The jurisdictions the tables name (``"*"`` left out)."""
        named = {*self.max_jurisdiction_training_s, *self.epsilon_ceiling}
        return named - {EVERY_JURISDICTION}

    @staticmethod
    def limit(table: dict[str, float], jurisdiction: str) -> float | None:
        """``jurisdiction``'s entry of ``table``, else its ``"*"`` entry, else None."""
        return table.get(jurisdiction, table.get(EVERY_JURISDICTION))
