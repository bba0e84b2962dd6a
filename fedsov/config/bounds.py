"""Bounds on one update, in a coordinator's or regional aggregator's ``[rounds]``.

An update past either is refused with the reason, before it touches the aggregate.
The defaults sit far above honest updates (the quickstart's measure 3.1 to 3.6 in L2
norm, from about 320 examples) and keep float32 sums finite: every element of a sum
stays below sites x ``MAX_EXAMPLES`` x ``MAX_UPDATE_NORM``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fedsov.config.base import Int, Number

__all__ = ["MAX_EXAMPLES", "MAX_UPDATE_NORM", "ExampleCap", "NormBound"]

MAX_UPDATE_NORM = 1000.0
MAX_EXAMPLES = 10_000_000

NormBound = Annotated[Number, Field(gt=0.0)]
"""``max_update_norm``: the largest L2 norm (over all tensors) an update may have."""

ExampleCap = Annotated[Int, Field(ge=1)]
"""``max_examples``: the largest ``num_examples`` (an update's weight) it may claim."""
