"""Secure aggregation within a region (SecAgg+, Bell et al. CCS 2020).

No aggregator ever sees one site's update: each site adds masks that cancel in the
sum (pairwise, agreed with its neighbours in a random k-regular graph) or that the
aggregator removes once the round's survivors are known (self-masks, rebuilt from
Shamir shares held by the neighbours). docs/secure-aggregation.md has the protocol,
the threat model and the costs.
"""

from fedsov.secagg.graph import auto_neighbours, random_graph
from fedsov.secagg.params import default_threshold, round_params
from fedsov.secagg.quantize import RING_DTYPES, decode_sum, ring_bits
from fedsov.secagg.region import RegionRound, Unmasking
from fedsov.secagg.ring import RingSum
from fedsov.secagg.site import TAIL_TENSOR, SiteRound, masked_manifest

__all__ = [
    "RING_DTYPES",
    "TAIL_TENSOR",
    "RegionRound",
    "RingSum",
    "SiteRound",
    "Unmasking",
    "auto_neighbours",
    "decode_sum",
    "default_threshold",
    "masked_manifest",
    "random_graph",
    "ring_bits",
    "round_params",
]
