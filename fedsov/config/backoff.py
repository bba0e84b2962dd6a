"""``[reconnect]``: exponential backoff with jitter towards the upstream."""

from __future__ import annotations

import random
from typing import Annotated

from pydantic import Field

from fedsov.config.base import Int, Number, Section, section

__all__ = ["Backoff"]


def _file_key(name: str) -> dict[str, str]:
    return {"validation_alias": name, "serialization_alias": name}


@section
class Backoff(Section):
    """Delays between attempts to reach the upstream; ``max_attempts = 0`` retries forever."""

    SECTION = "reconnect"
    # Named in a file as the [reconnect] table spells them.
    initial_s: Annotated[Number, Field(gt=0.0, **_file_key("initial_backoff_s"))] = 0.5
    max_s: Annotated[Number, Field(gt=0.0, **_file_key("max_backoff_s"))] = 30.0
    max_attempts: Annotated[Int, Field(ge=0)] = 0

    def delay(self, failures: int) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** (failures - 1))
        return base * random.uniform(0.5, 1.0)  # jitter: peers do not reconnect in lockstep
