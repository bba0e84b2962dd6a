"""``[strategy]``: the aggregation rule by name, then that rule's keyword settings.

    [strategy]
    name = "fedadam"   # fedavg (default), fedprox, fedadam, fedyogi, fedadagrad, fedavgm,
    eta = 0.01         # fedmedian, fedtrimmedavg, krum, multikrum, bulyan

The name and settings are checked by ``fedsov.strategy.create_strategy`` (the layer
above) when a role's config is loaded; here they are only read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import model_validator

from fedsov.config.base import Section, Str, fields_of, section, with_fields

__all__ = ["StrategyConfig"]


@section
class StrategyConfig(Section):
    SECTION = "strategy"
    name: Str = "fedavg"
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _settings_beside_the_name(cls, data: Any) -> Any:
        """A file's keys other than ``name`` are the rule's settings."""
        values = fields_of(data)
        if "settings" in values:
            return data
        settings = {k: v for k, v in values.items() if k != "name"}
        return with_fields(data, {"name": values.get("name", "fedavg"), "settings": settings})

    def table(self) -> dict[str, Any]:
        """The ``[strategy]`` table a file spells this with."""
        return {"name": self.name, **self.settings}
