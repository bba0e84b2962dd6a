"""In-process FedAvg with DP-SGD sites on sklearn digits (no network, no processes).

Five IID sites each keep one :class:`~fedsov.site.trainer.DPTrainer`, so a site's epsilon
composes over rounds. Each round every site trains the global MLP for the local epochs and
the global model becomes the example-weighted mean of the sites' weights.

    .venv/bin/python benchmarks/inprocess_fedavg.py --rounds 40 --sigma 2.0 --clip 1.0
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from fedsov.config import PrivacyConfig, TrainingPlan
from fedsov.site.data import Dataset
from fedsov.site.trainer import DPTrainer, evaluate


def build_model() -> nn.Module:
    """The MLP 64-128-10 of the digits baseline."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def digits_split(seed: int, sites: int) -> tuple[list[Dataset], Dataset]:
    """Stratified 80/20 train/test split; the training part dealt IID to ``sites`` sites."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    order = np.random.default_rng(seed).permutation(len(y_tr))
    parts = np.array_split(order, sites)
    return [Dataset(x_tr[p], y_tr[p]) for p in parts], Dataset(x_te, y_te)


def weighted_mean(
    updates: Sequence[dict[str, np.ndarray]], counts: Sequence[int]
) -> dict[str, np.ndarray]:
    """Example-weighted FedAvg of state dicts."""
    total = float(sum(counts))
    out: dict[str, np.ndarray] = {}
    for key in updates[0]:
        acc = np.zeros(updates[0][key].shape, dtype=np.float64)
        for update, n in zip(updates, counts, strict=True):
            acc += update[key] * (n / total)
        out[key] = acc.astype(np.float32)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--sites", type=int, default=5)
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--sigma", type=float, default=2.0, help="noise multiplier")
    p.add_argument("--clip", type=float, default=1.0, help="max per-sample gradient norm")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--accountant", default="pld", choices=("pld",))
    p.add_argument("--no-dp", action="store_true", help="plain SGD at the sites")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv)
    # Opacus warns that secure RNG is off and that the first layer's input needs no gradient.
    warnings.filterwarnings("ignore", module="opacus")

    started = time.perf_counter()
    site_data, test = digits_split(args.seed, args.sites)
    train = TrainingPlan(
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        momentum=args.momentum,
    )
    privacy = PrivacyConfig(
        noise_multiplier=args.sigma,
        max_grad_norm=args.clip,
        delta=args.delta,
        accountant=args.accountant,
        enabled=not args.no_dp,
    )
    trainers = [
        DPTrainer(
            data=d, train=train, privacy=privacy, device=args.device, seed=args.seed * 1000 + i
        )
        for i, d in enumerate(site_data)
    ]
    torch.manual_seed(args.seed)
    init = build_model().state_dict()
    global_weights = {k: v.detach().cpu().numpy().copy() for k, v in init.items()}
    train_seconds = 0.0
    accuracy, loss, max_eps = math.nan, math.nan, math.nan
    for rnd in range(1, args.rounds + 1):
        results = []
        for trainer in trainers:
            model = build_model()
            model.load_state_dict({k: torch.from_numpy(v) for k, v in global_weights.items()})
            results.append(trainer.train_round(model, round_seed=rnd))
        train_seconds += sum(r.seconds for r in results)
        global_weights = weighted_mean(
            [r.weights for r in results], [r.num_examples for r in results]
        )
        model = build_model()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in global_weights.items()})
        accuracy, loss = evaluate(model, test, device=args.device)
        max_eps = max(r.epsilon for r in results)
        if not args.quiet:
            print(
                f"round {rnd:3d}  test acc {accuracy:.4f}  loss {loss:.4f}  "
                f"max site eps {max_eps:.3f}"
            )
    wall = time.perf_counter() - started
    mode = (
        "no DP"
        if args.no_dp
        else (f"sigma={args.sigma} C={args.clip} delta={args.delta:g} {args.accountant}")
    )
    print(
        f"final: rounds={args.rounds} batch={args.batch_size} lr={args.lr} {mode}  "
        f"test acc {accuracy:.4f}  max site eps {max_eps:.3f}  "
        f"train {train_seconds:.1f} s (incl. accounting)  wall {wall:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
