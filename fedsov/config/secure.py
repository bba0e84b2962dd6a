"""``[secure_aggregation]``: SecAgg+ between a node and the sites below it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fedsov.config.base import Int, Number, Section, section

__all__ = ["SecureAggregationSettings"]


@section
class SecureAggregationSettings(Section):
    """What a secure round asks of its sites (docs/secure-aggregation.md)."""

    SECTION = "secure_aggregation"
    # t: shares of a site's secrets needed to rebuild them, and the fewest sites whose
    # masked updates a round may sum; 0: a strict majority of each site's share
    # holders (k + 1), so no two disjoint groups of holders both rebuild a secret
    threshold: Annotated[Int, Field(ge=0)] = 0
    # k: how many other sites each masks with and shares its secrets to; 0: every
    # other site up to 17 sites, then about 4·log2(n)
    neighbours: Annotated[Int, Field(ge=0, le=512)] = 0
    # the quantization step is clip·2^-precision_bits (relative error ~1e-7 per update)
    precision_bits: Annotated[Int, Field(ge=8, le=40)] = 24
    # L2 norm each site clips its update to (plain FedAvg; DP-FedAvg clips to its own C)
    clip: Annotated[Number, Field(gt=0.0)] = 10.0
    # how long the aggregator waits for keys, for shares, and for the survivors' shares
    stage_timeout_s: Annotated[Number, Field(gt=0.0)] = 30.0
