"""Secure aggregation (SecAgg+) cost: one site's work and bytes, the aggregator's time.

    python benchmarks/secagg/run.py                        # n = 10, 50, 100; 1M params; 3 repeats
    python benchmarks/secagg/run.py --quick                # n = 10, 100k params
    python benchmarks/secagg/run.py --sites 20 --params 250000 --cases fedavg --json out.json

In process, no gRPC: ``fedsov.secagg.SiteRound`` for each site and a ``RegionRound``
for the aggregator, every message handed over directly. Each site's update is one
float32 tensor of ``--params`` elements, a shared direction plus its own noise, L2
norm ~0.7 (below the clip). Two cases, with fedsov's defaults (precision_bits 24,
k = auto_neighbours(n), t = default_threshold(k), a strict majority):

- ``fedavg``: weighted by example counts, ring sized for max_examples = 10,000,000
  (a 64-bit ring), clip 10 (``[secure_aggregation] clip``), FedAvgAggregate;
- ``dp``: DP-FedAvg, unweighted (W = 1: a 32-bit ring while n < 128), clip 1 (the
  strategy's C), noise multiplier 0 so that the result can be checked.

Measured, as means over ``--repeats``:

- site: one site's compute (keys + share + accept_shares + mask + reveal; the sites
  run in parallel and cost the same) and the bytes it sends (advertised keys, sealed
  shares, the masked upload, its reveals; protocol fields, no gRPC framing), against
  a plain site's ``encode`` of its float32 update and its size;
- aggregator: its key stages, every masked upload through ``fedsov.codec.PayloadReader``
  into ``SecureAggregate`` (a ``RingSum``), ``name_survivors``, the reveals,
  ``unmasking`` (Shamir), the ring unmask and decode, ``write_result``; against the plain
  aggregator (``PayloadReader`` and the strategy's own fold of the same n float32
  updates, ``write_result``);
- round = one site's compute + the aggregator's time (no network, no training);
- the relative L2 error of the secure mean (and the plain float32 one) against the
  exact float64 mean.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedsov.codec import EncodedTensors, Manifest, PayloadReader, Segment, encode, iter_chunks
from fedsov.config import SecureAggregationSettings
from fedsov.messages import RevealedShare, SealedShare, SecAggKeys, SecAggParams
from fedsov.secagg import RegionRound, SiteRound, auto_neighbours, default_threshold, round_params
from fedsov.strategy import DPFedAvg, FedAvg, SiteDPSettings
from fedsov.strategy.base import RoundAggregate
from fedsov.strategy.secure import SecureAggregate

PRECISION_BITS = 24
MAX_EXAMPLES = 10_000_000  # the default max_examples: FedAvg's largest weight
ROUND = 1
NORM = 0.7  # each update's L2 norm, about


@dataclass(frozen=True)
class Case:
    name: str
    weighted: bool
    max_weight: int
    clip: float

    def strategy(self) -> Callable[[Manifest], RoundAggregate]:
        if self.weighted:
            return FedAvg().start_round
        settings = SiteDPSettings(clip=self.clip, noise_multiplier=0.0)
        return lambda manifest: DPFedAvg(settings, seed=1).start_round(manifest)


CASES = {
    "fedavg": Case("fedavg", weighted=True, max_weight=MAX_EXAMPLES, clip=10.0),
    "dp": Case("dp", weighted=False, max_weight=1, clip=1.0),
}


@dataclass
class Row:
    case: str
    sites: int
    params: int
    neighbours: int  # k
    threshold: int  # t
    ring_bits: int
    dropouts: int
    site_s: float  # one site's compute, secure
    site_plain_s: float  # one site's encode of its float32 update
    site_bytes: int  # bytes one site sends, secure
    plain_bytes: int  # its float32 upload
    bytes_ratio: float
    aggregator_s: float
    aggregator_plain_s: float
    aggregator_ratio: float
    round_s: float
    round_plain_s: float
    round_ratio: float
    rel_l2: float  # secure mean vs the exact mean
    rel_l2_plain: float  # plain float32 FedAvg / DP-FedAvg vs the exact mean
    site_breakdown_s: dict[str, float] = field(default_factory=dict)
    site_bytes_breakdown: dict[str, int] = field(default_factory=dict)
    aggregator_breakdown_s: dict[str, float] = field(default_factory=dict)
    repeats: int = 0


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Clock:
    """Seconds spent per phase, summed over calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def time(self, phase: str, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = call()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
        return result

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def names(n: int) -> list[str]:
    return [f"site-{i:03d}" for i in range(n)]


def make_updates(n: int, d: int, seed: int) -> list[np.ndarray]:
    """n float32 updates: a shared direction plus each site's own, L2 norm ~``NORM``."""
    rng = np.random.default_rng(seed)
    sigma = NORM / math.sqrt(2 * d)
    shared = rng.standard_normal(d, dtype=np.float32) * np.float32(sigma)
    return [shared + rng.standard_normal(d, dtype=np.float32) * np.float32(sigma) for _ in range(n)]


def secagg_params(case: Case, n: int) -> SecAggParams:
    """fedsov's defaults, as the round engine computes them (fedsov.secagg.round_params)."""
    config = SecureAggregationSettings(precision_bits=PRECISION_BITS, clip=case.clip)
    return round_params(
        config, sites=n, clip=case.clip, weighted=case.weighted, max_weight=case.max_weight
    )


def keys_bytes(keys: SecAggKeys) -> int:
    return (
        len(keys.name.encode()) + len(keys.cipher_key) + len(keys.mask_key) + len(keys.commitment)
    )


def sealed_bytes(shares: Sequence[SealedShare]) -> int:
    return sum(len(s.peer.encode()) + len(s.ciphertext) for s in shares)


def reveal_bytes(reveals: Sequence[RevealedShare]) -> int:
    return sum(len(r.owner.encode()) + 1 + len(r.value) for r in reveals)


@dataclass
class KeyStages:
    """A round after its key stages: the sites ready to mask, the region at upload."""

    sites: list[SiteRound]
    region: RegionRound
    site0: Clock
    bytes0: dict[str, int]
    server: Clock


def key_stages(p: SecAggParams, n: int) -> KeyStages:
    """Keys and sealed shares of every site; site 0's calls and the region's are timed."""
    site0, server = Clock(), Clock()
    bytes0: dict[str, int] = {}
    sites = [SiteRound(name, p, round=ROUND) for name in names(n)]
    region = RegionRound(p, ROUND, frozenset(names(n)))
    for i, site in enumerate(sites):
        keys = site0.time("keys", site.keys) if i == 0 else site.keys()
        if i == 0:
            bytes0["keys"] = keys_bytes(keys)
        server.time("key stages", lambda s=site, k=keys: region.advertise(s.name, k))
    server.time("key stages", region.close_advertising)
    for i, site in enumerate(sites):
        neighbours = server.time("key stages", lambda s=site: region.neighbours(s.name))
        if i == 0:
            shares = site0.time("share", lambda s=site, nb=neighbours: s.share(nb))
            bytes0["sealed shares"] = sealed_bytes(shares)
        else:
            shares = site.share(neighbours)
        server.time("key stages", lambda s=site, sh=shares: region.submit_shares(s.name, sh))
    server.time("key stages", region.close_sharing)
    for i, site in enumerate(sites):
        mine = server.time("key stages", lambda s=site: region.shares_for(s.name))
        if i == 0:
            site0.time("accept_shares", lambda s=site, m=mine: s.accept_shares(m))
        else:
            site.accept_shares(mine)
    return KeyStages(sites, region, site0, bytes0, server)


def fold_upload(
    aggregate: RoundAggregate, encoded: EncodedTensors, manifest: Manifest, w: int
) -> None:
    """An upload as a round takes it: checked chunk by chunk, measured, then folded."""
    fold = aggregate.begin(w)
    reader = PayloadReader(manifest, size=encoded.size, sha256=encoded.sha256)
    segments: list[Segment] = []
    for chunk in iter_chunks(encoded.payload):
        for segment in reader.feed(chunk):
            fold.add(segment)
            segments.append(segment)
    reader.finish()
    fold.finish(lambda: iter(segments))


@dataclass
class Inputs:
    """One (case, n): the uploads both aggregators fold, and what checks their result."""

    case: Case
    params: SecAggParams
    model: Manifest
    weights: list[int]
    survivors: list[int]  # indices of the sites that upload
    masked: list[EncodedTensors]  # by survivor
    plain: list[EncodedTensors]  # by survivor
    region_at_upload: RegionRound
    reveals: dict[str, tuple[RevealedShare, ...]]
    exact: np.ndarray  # the exact float64 mean of the survivors' (clipped) updates


def secure_aggregator(inputs: Inputs) -> tuple[Clock, np.ndarray]:
    clock = Clock()
    region = copy.deepcopy(inputs.region_at_upload)  # a fresh region at the upload stage
    inner = inputs.case.strategy()(inputs.model)
    aggregate = SecureAggregate(inner, inputs.model, inputs.params)
    for i, encoded in zip(inputs.survivors, inputs.masked, strict=True):
        w = inputs.weights[i]
        clock.time("fold", lambda e=encoded, w=w: fold_upload(aggregate, e, aggregate.manifest, w))
    uploaded = [names(len(inputs.weights))[i] for i in inputs.survivors]
    clock.time("name_survivors", lambda: region.name_survivors(uploaded))
    for site, reveals in inputs.reveals.items():
        clock.time("reveals", lambda s=site, r=reveals: region.submit_reveals(s, r))
    unmasking = clock.time("unmasking", region.unmasking)
    clock.time("ring unmask + decode", lambda: aggregate.unmask(unmasking))
    base = {"w": np.zeros(inputs.exact.shape, dtype=np.float32)}
    out = {"w": np.empty_like(base["w"])}
    clock.time("write_result", lambda: aggregate.write_result(base, out))
    return clock, out["w"]


def plain_aggregator(inputs: Inputs) -> tuple[Clock, np.ndarray]:
    clock = Clock()
    aggregate = inputs.case.strategy()(inputs.model)
    for i, encoded in zip(inputs.survivors, inputs.plain, strict=True):
        w = inputs.weights[i]
        clock.time("fold", lambda e=encoded, w=w: fold_upload(aggregate, e, inputs.model, w))
    base = {"w": np.zeros(inputs.exact.shape, dtype=np.float32)}
    out = {"w": np.empty_like(base["w"])}
    clock.time("write_result", lambda: aggregate.write_result(base, out))
    return clock, out["w"]


def relative_l2(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want))


def clipped(update: np.ndarray, clip: float) -> np.ndarray:
    wide = update.astype(np.float64)
    return wide * min(1.0, clip / float(np.linalg.norm(wide)))


@dataclass
class SiteRun:
    """One fresh round's key stages and uploads: site 0's costs, and what it made."""

    site0: Clock
    server_key_stages_s: float
    plain_encode_s: float
    bytes0: dict[str, int]
    masked: list[EncodedTensors]  # by uploading site
    reveals: dict[str, tuple[RevealedShare, ...]]
    region_at_upload: RegionRound


def site_run(
    p: SecAggParams,
    updates: Sequence[np.ndarray],
    weights: Sequence[int],
    model: Manifest,
    *,
    uploading: Sequence[int],
    alive: tuple[str, ...],
    gone: tuple[str, ...],
) -> SiteRun:
    """A fresh round: every site's keys and shares; ``uploading`` mask and reveal."""
    stages = key_stages(p, len(updates))
    site0 = stages.site0
    masked: list[EncodedTensors] = []
    for i in uploading:
        site, delta, w = stages.sites[i], {"w": updates[i]}, weights[i]
        if i == 0:
            masked.append(site0.time("mask", lambda: site.mask(delta, model, weight=w)))  # noqa: B023
        else:
            masked.append(site.mask(delta, model, weight=w))
    at_upload = copy.deepcopy(stages.region)  # for the aggregator's repeats
    reveals: dict[str, tuple[RevealedShare, ...]] = {}
    for i in uploading:
        site = stages.sites[i]
        if i == 0:
            reveals[site.name] = site0.time("reveal", lambda: site.reveal(alive, gone))  # noqa: B023
        else:
            reveals[site.name] = site.reveal(alive, gone)
    first = stages.sites[0].name
    bytes0 = {
        **stages.bytes0,
        "masked upload": masked[0].size,
        "reveals": reveal_bytes(reveals[first]),
    }
    start = time.perf_counter()
    encode({"w": updates[0]})  # what a plain site does with its update
    plain_s = time.perf_counter() - start
    return SiteRun(site0, stages.server.total, plain_s, bytes0, masked, reveals, at_upload)


def make_inputs(
    case: Case, p: SecAggParams, n: int, d: int, *, dropouts: int, seed: int
) -> tuple[Inputs, list[SiteRun], list[np.ndarray]]:
    """The first round of (case, n): every survivor's masked and plain upload."""
    updates = make_updates(n, d, seed)
    rng = np.random.default_rng(seed + 1)
    weights = [int(w) for w in rng.integers(100, 5000, n)] if case.weighted else [1] * n
    model = encode({"w": np.zeros(d, dtype=np.float32)}).manifest
    everyone = names(n)
    survivors = list(range(n - dropouts))  # the last ``dropouts`` sites share, then drop
    run = site_run(
        p,
        updates,
        weights,
        model,
        uploading=survivors,
        alive=tuple(everyone[i] for i in survivors),
        gone=tuple(everyone[len(survivors) :]),
    )
    plain = [encode({"w": updates[i]}) for i in survivors]
    exact = np.zeros(d, dtype=np.float64)
    for i in survivors:
        exact += weights[i] * clipped(updates[i], case.clip)
    exact /= sum(weights[i] for i in survivors)
    inputs = Inputs(
        case,
        p,
        model,
        weights,
        survivors,
        run.masked,
        plain,
        run.region_at_upload,
        run.reveals,
        exact,
    )
    return inputs, [run], updates


def measure(case: Case, n: int, d: int, *, repeats: int, dropouts: int, seed: int) -> Row:
    p = secagg_params(case, n)
    inputs, runs, updates = make_inputs(case, p, n, d, dropouts=dropouts, seed=seed)
    say(f"{case.name} n={n}: site repeat 1/{repeats}: {runs[0].site0.total:.3f} s")
    for r in range(1, repeats):  # fresh rounds again, only site 0 masking
        runs.append(
            site_run(
                p,
                updates,
                inputs.weights,
                inputs.model,
                uploading=[0],
                alive=tuple(names(n)),
                gone=(),
            )
        )
        say(f"{case.name} n={n}: site repeat {r + 1}/{repeats}: {runs[-1].site0.total:.3f} s")
    secure_runs: list[Clock] = []
    plain_runs: list[Clock] = []
    errors: list[float] = []
    plain_errors: list[float] = []
    for r in range(repeats):
        clock, mean = secure_aggregator(inputs)
        secure_runs.append(clock)
        errors.append(relative_l2(mean, inputs.exact))
        clock, mean = plain_aggregator(inputs)
        plain_runs.append(clock)
        plain_errors.append(relative_l2(mean, inputs.exact))
        say(
            f"{case.name} n={n}: aggregator repeat {r + 1}/{repeats}: secure "
            f"{secure_runs[-1].total:.3f} s, plain {plain_runs[-1].total:.3f} s"
        )
    site_s = statistics.fmean(run.site0.total for run in runs)
    site_plain_s = statistics.fmean(run.plain_encode_s for run in runs)
    aggregator_breakdown = {
        "key stages": statistics.fmean(run.server_key_stages_s for run in runs),
        **mean_phases(secure_runs),
    }
    aggregator_s = sum(aggregator_breakdown.values())
    aggregator_plain_s = statistics.fmean(c.total for c in plain_runs)
    bytes0 = runs[0].bytes0
    site_bytes = sum(bytes0.values())
    plain_bytes = inputs.plain[0].size
    round_s, round_plain_s = site_s + aggregator_s, site_plain_s + aggregator_plain_s
    return Row(
        case=case.name,
        sites=n,
        params=d,
        neighbours=p.neighbours,
        threshold=p.threshold,
        ring_bits=p.ring_bits,
        dropouts=dropouts,
        site_s=site_s,
        site_plain_s=site_plain_s,
        site_bytes=site_bytes,
        plain_bytes=plain_bytes,
        bytes_ratio=site_bytes / plain_bytes,
        aggregator_s=aggregator_s,
        aggregator_plain_s=aggregator_plain_s,
        aggregator_ratio=aggregator_s / aggregator_plain_s,
        round_s=round_s,
        round_plain_s=round_plain_s,
        round_ratio=round_s / round_plain_s,
        rel_l2=statistics.fmean(errors),
        rel_l2_plain=statistics.fmean(plain_errors),
        site_breakdown_s=mean_phases([run.site0 for run in runs]),
        site_bytes_breakdown=bytes0,
        aggregator_breakdown_s=aggregator_breakdown,
        repeats=repeats,
    )


def mean_phases(clocks: Sequence[Clock]) -> dict[str, float]:
    phases = dict.fromkeys(k for c in clocks for k in c.seconds)
    return {k: statistics.fmean(c.seconds.get(k, 0.0) for c in clocks) for k in phases}


def mib(count: int) -> str:
    return f"{count / 2**20:.2f} MiB"


def markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| case | n | k | t | ring | site s (plain) | site sends (float32) | bytes x "
        "| aggregator s (plain) | x | round s (plain) | x | rel. L2 (plain) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.sites} | {r.neighbours} | {r.threshold} | {r.ring_bits} "
            f"| {r.site_s:.3f} ({r.site_plain_s:.3f}) "
            f"| {mib(r.site_bytes)} ({mib(r.plain_bytes)}) | {r.bytes_ratio:.2f} "
            f"| {r.aggregator_s:.3f} ({r.aggregator_plain_s:.3f}) | {r.aggregator_ratio:.1f} "
            f"| {r.round_s:.3f} ({r.round_plain_s:.3f}) | {r.round_ratio:.1f} "
            f"| {r.rel_l2:.1e} ({r.rel_l2_plain:.1e}) |"
        )
    return "\n".join(lines) + "\n"


def breakdown(rows: Sequence[Row]) -> str:
    """Where the time goes: one line per row, each phase's mean seconds."""
    out = []
    for r in rows:
        site = ", ".join(f"{k} {v:.3f}" for k, v in r.site_breakdown_s.items())
        agg = ", ".join(f"{k} {v:.3f}" for k, v in r.aggregator_breakdown_s.items())
        sent = ", ".join(f"{k} {v}" for k, v in r.site_bytes_breakdown.items())
        out.append(f"- {r.case} n={r.sites}: site [{site}]; aggregator [{agg}]; bytes [{sent}]")
    return "\n".join(out) + "\n"


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sites", default="10,50,100", help="comma-separated site counts")
    p.add_argument("--params", type=int, default=1_000_000, help="elements of the update")
    p.add_argument("--cases", default="fedavg,dp", help=f"of {sorted(CASES)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dropouts", type=int, default=0, help="sites that share, then drop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="n = 10 only, 100k params")
    p.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = p.parse_args(argv)
    if args.quick:
        args.sites, args.params = "10", 100_000
    args.site_counts = [int(x) for x in args.sites.split(",") if x]
    args.case_list = [c for c in args.cases.split(",") if c]
    unknown = [c for c in args.case_list if c not in CASES]
    if unknown:
        p.error(f"--cases: unknown {unknown}; known: {sorted(CASES)}")
    if args.repeats < 1 or args.params < 1:
        p.error("--repeats and --params must be at least 1")
    for n in args.site_counts:
        k = auto_neighbours(n)
        if n < 2 or n - args.dropouts < default_threshold(k):
            p.error(f"{n} sites with {args.dropouts} dropouts leave fewer than the threshold")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Runs the benchmark, prints its table; the rows, as JSON-ready dicts."""
    args = _args(argv)
    for name in args.case_list:  # warm up (imports, first allocations), not reported
        measure(CASES[name], 4, 1000, repeats=1, dropouts=0, seed=args.seed)
    rows = []
    for name in args.case_list:
        for n in args.site_counts:
            rows.append(
                measure(
                    CASES[name],
                    n,
                    args.params,
                    repeats=args.repeats,
                    dropouts=args.dropouts,
                    seed=args.seed,
                )
            )
    print(
        f"SecAgg+ vs plain, {args.params:,} float32 params, precision_bits {PRECISION_BITS}, "
        f"{args.dropouts} dropouts, mean of {args.repeats} repeats (seconds, one process)\n"
    )
    print(markdown(rows))
    print(breakdown(rows))
    document = [asdict(r) for r in rows]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2))
    return document


if __name__ == "__main__":
    main()
