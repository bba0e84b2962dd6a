"""Byzantine robustness: FedAvg and the robust rules against sign-flipping sites.

    python benchmarks/byzantine/run.py                     # 10 sites, 2 attack, 3 seeds
    python benchmarks/byzantine/run.py --rules fedavg,krum,fedtrimmedavg --scale 10
    python benchmarks/byzantine/run.py --set multikrum.num_nodes_to_select=4

Digits is split as ``fedsov simulate`` splits it (``write_site_data``: 20 % held out,
the rest Dirichlet(alpha) label-skewed over the sites). Every round each site trains
the global MLP with plain SGD (fedsov's trainer, privacy off) and uploads its delta;
the attackers upload ``-scale * delta`` instead. Every upload goes through fedsov's
round path (``Round.receive``: chunk checks, norm bound, spool, the strategy's fold)
and ``Round.next_model()`` makes the next global model. For each rule the federation
runs honest and attacked over every seed; the table gives the final test accuracy,
mean ± std. Writes ``results.json`` and ``table.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsov.codec import iter_chunks
from fedsov.config import MAX_UPDATE_NORM, PrivacyConfig, TrainingPlan
from fedsov.exceptions import FedsovError, NonFiniteTensor, TrainingError, UpdateOutOfBounds
from fedsov.messages import TrainTask
from fedsov.node.model import GlobalModel
from fedsov.node.rounds import Round, TaskRecord, TaskStatus
from fedsov.simulation.data_prep import write_site_data
from fedsov.simulation.models import mlp
from fedsov.simulation.scenario import DataPlan
from fedsov.site.data import Dataset, DataSpec, load_local_data
from fedsov.site.trainer import DPTrainer, evaluate
from fedsov.strategy import STRATEGIES, Strategy, create_strategy
from fedsov.testing import update_for

ROBUST_RULES = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")


@dataclass(frozen=True)
class Setup:
    """One federation: data split, attack, training and the round's norm bound."""

    sites: int = 10
    attackers: int = 2
    scale: float = 10.0
    alpha: float = 0.3
    rounds: int = 60
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.3
    hidden: int = 64
    max_update_norm: float = math.inf  # no bound: the rule alone must hold


@dataclass
class RunResult:
    rule: str
    attacked: bool
    seed: int
    accuracy: float  # final test accuracy
    accuracy_by_round: list[float] = field(default_factory=list)
    refused: int = 0  # uploads the round refused (the norm bound, NaN/Inf)
    failed: int = 0  # local rounds that diverged (the site sends nothing, as a real one)
    honest_norm_max: float = 0.0  # largest L2 norm an honest site sent
    attack_norm_max: float = 0.0  # largest L2 norm an attacker sent
    diverged_round: int | None = None  # the round whose next model overflowed (fedsov refuses it)
    attacker_sites: list[str] = field(default_factory=list)
    seconds: float = 0.0


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_split(setup: Setup, seed: int, directory: Path) -> tuple[dict[str, Dataset], Dataset]:
    """The sites' data and the held-out test set, by ``fedsov simulate``'s own code."""
    names = [f"site-{i:02d}" for i in range(setup.sites)]
    plan = DataPlan(dataset="digits", partition="dirichlet", alpha=setup.alpha, sites=setup.sites)
    paths, test_path = write_site_data(plan, seed=seed, names=names, directory=directory)

    def load(path: Path) -> Dataset:  # as a site loads its file
        return load_local_data(DataSpec(path=path))

    return {name: load(path) for name, path in paths.items()}, load(test_path)


def pick_attackers(names: Sequence[str], count: int, seed: int) -> list[str]:
    chosen = np.random.default_rng(seed).choice(len(names), size=count, replace=False)
    return sorted(names[int(i)] for i in chosen)


def task_of(model: GlobalModel, round: int, site: str, plan: TrainingPlan) -> TrainTask:
    return TrainTask(
        task_id=f"r{round}-{site}",
        round=round,
        model_sha256=model.sha256,
        model_size=model.encoded.size,
        manifest=model.manifest,
        plan=plan,
        deadline_unix=0.0,
        round_seed=round,
    )


async def stream(payload: bytes) -> AsyncIterator[bytes]:
    for chunk in iter_chunks(payload):
        yield bytes(chunk)


def local_delta(
    trainer: DPTrainer, setup: Setup, base: Mapping[str, np.ndarray], round: int
) -> dict[str, np.ndarray]:
    """One site's honest update (local - global) after its local epochs."""
    module = mlp(in_features=64, hidden=setup.hidden, num_classes=10)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in base.items()})
    local = trainer.train_round(module, round_seed=round).weights
    return {k: local[k] - base[k] for k in base}


def l2_norm(delta: Mapping[str, np.ndarray]) -> float:
    wide = [v.ravel().astype(np.float64) for v in delta.values()]
    return math.sqrt(sum(float(np.dot(v, v)) for v in wide))


@dataclass
class Federation:
    """The sites of one run (their trainers), its attackers and its strategy."""

    setup: Setup
    strategy: Strategy
    trainers: dict[str, DPTrainer]
    attackers: list[str]
    spool: Path
    result: RunResult

    async def play_round(self, number: int, model: GlobalModel) -> GlobalModel:
        """One round through ``Round``: every site's upload, then the next model."""
        plan = next(iter(self.trainers.values())).train
        tasks = {site: task_of(model, number, site, plan) for site in self.trainers}
        rnd = Round(
            number=number,
            model=model,
            tasks={t.task_id: TaskRecord(task=t, site=site) for site, t in tasks.items()},
            deadline=time.time() + 3600.0,
            _aggregate=self.strategy.start_round(model.manifest),
            spool_dir=self.spool / f"round-{number:04d}",
            max_update_norm=self.setup.max_update_norm,
        )
        for site, trainer in self.trainers.items():
            try:
                delta = self.update_of(site, trainer, model.arrays(), number)
            except TrainingError:
                self.result.failed += 1
                continue
            header, payload = update_for(tasks[site], delta, trainer.num_examples)
            try:
                await rnd.receive(site, header, stream(payload))
            except (UpdateOutOfBounds, NonFiniteTensor):  # the round goes on without it
                self.result.refused += 1
        await rnd.settled()
        if not rnd.by_status(TaskStatus.ACCEPTED):
            return model  # every upload refused: the model stays (the engine fails the round)
        return rnd.next_model()

    def update_of(
        self, site: str, trainer: DPTrainer, base: Mapping[str, np.ndarray], number: int
    ) -> dict[str, np.ndarray]:
        """The site's honest delta, or an attacker's ``-scale`` times it."""
        delta = local_delta(trainer, self.setup, base, number)
        r = self.result
        if site not in self.attackers:
            r.honest_norm_max = max(r.honest_norm_max, l2_norm(delta))
            return delta
        flipped = {k: (-self.setup.scale * v).astype(v.dtype) for k, v in delta.items()}
        r.attack_norm_max = max(r.attack_norm_max, l2_norm(flipped))
        return flipped


def initial_model(setup: Setup, seed: int) -> tuple[torch.nn.Module, GlobalModel]:
    torch.manual_seed(seed)
    module = mlp(in_features=64, hidden=setup.hidden, num_classes=10)
    arrays = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    return module, GlobalModel.from_arrays(arrays, round=0, parent=None)


def accuracy(module: torch.nn.Module, model: GlobalModel, test: Dataset) -> float:
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.arrays().items()})
    return evaluate(module, test, device="cpu")[0]


async def federate(
    setup: Setup, strategy: Strategy, rule: str, seed: int, *, attacked: bool, work: Path
) -> RunResult:
    """One run: ``setup.rounds`` rounds from a seeded model, the test accuracy after each."""
    started = time.perf_counter()
    site_data, test = load_split(setup, seed, work / "data")
    names = sorted(site_data)
    attackers = pick_attackers(names, setup.attackers, seed) if attacked else []
    plan = TrainingPlan(
        local_epochs=setup.local_epochs,
        batch_size=setup.batch_size,
        learning_rate=setup.learning_rate,
    )
    trainers = {
        name: DPTrainer(
            data=site_data[name],
            train=plan,
            privacy=PrivacyConfig(enabled=False),
            device="cpu",
            seed=seed * 1000 + i,
        )
        for i, name in enumerate(names)
    }
    result = RunResult(rule, attacked, seed, math.nan, attacker_sites=attackers)
    federation = Federation(setup, strategy, trainers, attackers, work / "spool", result)
    module, model = initial_model(setup, seed)
    for number in range(1, setup.rounds + 1):
        try:
            model = await federation.play_round(number, model)
        except NonFiniteTensor:  # fedsov makes no such model: the last one stays
            result.diverged_round = number
            break
        result.accuracy_by_round.append(accuracy(module, model, test))
    result.accuracy = accuracy(module, model, test)
    result.seconds = time.perf_counter() - started
    return result


def default_settings(rule: str, setup: Setup) -> dict[str, Any]:
    """Each robust rule told the true number of attackers (Bulyan: as many as it admits,
    n >= 4f + 3); ``--set`` overrides."""
    f = setup.attackers
    if rule in ("krum", "multikrum"):
        extra = {"num_nodes_to_select": setup.sites - f} if rule == "multikrum" else {}
        return {"num_malicious_nodes": f, **extra}
    if rule == "bulyan":
        return {"num_malicious_nodes": min(f, max(0, (setup.sites - 3) // 4))}
    if rule == "fedtrimmedavg":
        return {"beta": 0.2}
    return {}


def parse_sets(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``rule.key=value`` (value JSON, else a string) into {rule: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        rule, dot, key = target.partition(".")
        if not (sep and dot and rule and key):
            raise SystemExit(
                f"--set {item!r}: write rule.key=value, e.g. krum.num_malicious_nodes=2"
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(rule, {})[key] = value
    return out


def summary(results: Sequence[RunResult]) -> dict[tuple[str, bool], tuple[float, float]]:
    """(rule, attacked) -> (mean, std) of the final accuracy over the seeds."""
    groups: dict[tuple[str, bool], list[float]] = {}
    for r in results:
        groups.setdefault((r.rule, r.attacked), []).append(r.accuracy)
    return {
        key: (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
        for key, v in groups.items()
    }


def markdown(
    results: Sequence[RunResult],
    settings: Mapping[str, Mapping[str, Any]],
    skipped: Mapping[str, str],
) -> str:
    stats = summary(results)
    honest = stats.get(("fedavg", False))
    lines = [
        "| rule | settings | honest | attacked | attacked - honest FedAvg | refused / failed |",
        "|---|---|---|---|---|---|",
    ]
    for rule in dict.fromkeys(r.rule for r in results):
        cells = []
        for attacked in (False, True):
            mean, std = stats.get((rule, attacked), (float("nan"), 0.0))
            cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
        attacked_mean = stats.get((rule, True), (float("nan"), 0.0))[0]
        gap = f"{100 * (attacked_mean - honest[0]):+.1f}" if honest else "n/a"
        runs = [r for r in results if r.rule == rule and r.attacked]
        refused = f"{sum(r.refused for r in runs)} / {sum(r.failed for r in runs)}"
        shown = ", ".join(f"{k}={v}" for k, v in settings.get(rule, {}).items()) or "-"
        lines.append(f"| {rule} | {shown} | {cells[0]} | {cells[1]} | {gap} | {refused} |")
    if skipped:
        lines += ["", *(f"- {rule}: skipped ({why})" for rule, why in skipped.items())]
    return "\n".join(lines) + "\n"


def json_safe(value: Any) -> Any:
    """``value`` with each non-finite float as a string ("inf", "nan"): strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def describe(run: RunResult) -> str:
    return (
        f"{run.rule:14s} {'attacked' if run.attacked else 'honest  '} seed {run.seed}: "
        f"acc {run.accuracy:.4f}  refused {run.refused}  failed {run.failed}  "
        f"norms: honest <= {run.honest_norm_max:.3g}, attack <= {run.attack_norm_max:.3g}  "
        f"{run.seconds:.1f} s"
    )


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    d = Setup()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules", default=",".join(("fedavg", *ROBUST_RULES)))
    p.add_argument("--set", action="append", default=[], metavar="RULE.KEY=VALUE")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sites", type=int, default=d.sites)
    p.add_argument("--attackers", type=int, default=d.attackers)
    p.add_argument("--scale", type=float, default=d.scale, help="attackers send -scale * delta")
    p.add_argument("--alpha", type=float, default=d.alpha, help="Dirichlet label skew")
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--local-epochs", type=int, default=d.local_epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.learning_rate)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument(
        "--max-update-norm",
        type=float,
        default=d.max_update_norm,
        help=f"the round's norm bound (fedsov's default is {MAX_UPDATE_NORM:g})",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("runs/byzantine"))
    args = p.parse_args(argv)
    if not 0 <= args.attackers < args.sites:
        p.error("--attackers must be at least 0 and fewer than --sites")
    return args


def strategies(
    rules: Sequence[str], setup: Setup, sets: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The settings of each rule fedsov knows, and why each other rule is skipped."""
    settings: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for rule in rules:
        if rule not in STRATEGIES:
            skipped[rule] = f"create_strategy does not know it yet; known: {sorted(STRATEGIES)}"
            continue
        kwargs = {**default_settings(rule, setup), **sets.get(rule, {})}
        try:
            create_strategy(rule, **kwargs)
        except (TypeError, ValueError, FedsovError) as exc:
            skipped[rule] = f"create_strategy({rule!r}, **{kwargs}) failed: {exc}"
            continue
        settings[rule] = kwargs
    return settings, skipped


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    torch.set_num_threads(args.threads)
    setup = Setup(
        sites=args.sites,
        attackers=args.attackers,
        scale=args.scale,
        alpha=args.alpha,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        hidden=args.hidden,
        max_update_norm=args.max_update_norm,
    )
    rules = [r for r in args.rules.split(",") if r]
    settings, skipped = strategies(rules, setup, parse_sets(args.set))
    for rule, why in skipped.items():
        say(f"{rule}: skipped: {why}")
    results: list[RunResult] = []
    for rule, kwargs in settings.items():
        for attacked in (False, True):
            if attacked and setup.attackers == 0:
                continue
            for seed in range(args.seeds):
                with tempfile.TemporaryDirectory(prefix="fedsov-byzantine-") as work:
                    strategy = create_strategy(rule, **kwargs)  # fresh state every run
                    run = asyncio.run(
                        federate(setup, strategy, rule, seed, attacked=attacked, work=Path(work))
                    )
                results.append(run)
                say(describe(run))
    table = markdown(results, settings, skipped)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(table)
    document = {
        "setup": asdict(setup),
        "settings": settings,
        "skipped": skipped,
        "runs": [asdict(r) for r in results],
    }
    (args.out / "results.json").write_text(json.dumps(json_safe(document), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
