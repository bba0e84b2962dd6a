"""FedProx in fedsov's trainer: the proximal term pulls the local weights toward the
global model, after DP-SGD has clipped and noised (post-processing), and μ = 0 is SGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.optimizers import optimizer_fast_gradient_clipping as ghost
from sklearn.datasets import load_digits
from torch import nn

from fedsov.config import PrivacyConfig, TrainingPlan
from fedsov.randomness import REPRODUCIBLE_ENV
from fedsov.site import trainer as trainer_module
from fedsov.site.data import Dataset
from fedsov.site.trainer import DPTrainer, TrainResult


@pytest.fixture(scope="module")
def digits() -> Dataset:
    d = load_digits()
    return Dataset((d.data / 16.0).astype(np.float32)[:400], d.target.astype(np.int64)[:400])


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def train(data: Dataset, *, mu: float | None, dp: bool) -> tuple[TrainResult, nn.Module]:
    """One round of 3 epochs from ``mlp()``; ``mu`` None: the plan leaves it unset."""
    plan = TrainingPlan(local_epochs=3, batch_size=32, learning_rate=0.5)
    if mu is not None:
        plan = TrainingPlan(local_epochs=3, batch_size=32, learning_rate=0.5, proximal_mu=mu)
    privacy = PrivacyConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, enabled=dp)
    t = DPTrainer(data=data, train=plan, privacy=privacy, device="cpu", seed=5)
    return t.train_round(mlp(), round_seed=2), mlp()


def distance(result: TrainResult, model: nn.Module) -> float:
    """L2 distance of the trained weights from the global (initial) ones."""
    start = {k: v.numpy() for k, v in model.state_dict().items()}
    return float(np.sqrt(sum(((result.weights[k] - w) ** 2).sum() for k, w in start.items())))


@pytest.mark.parametrize("dp", [False, True])
def test_the_proximal_term_pulls_the_weights_toward_the_global_model(
    digits: Dataset, dp: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REPRODUCIBLE_ENV, "1")  # the same seeds, noise and batches for both
    sgd, start = train(digits, mu=0.0, dp=dp)
    prox, _ = train(digits, mu=1.0, dp=dp)
    assert distance(prox, start) < 0.8 * distance(sgd, start)
    assert (prox.steps, prox.epsilon) == (sgd.steps, sgd.epsilon)  # the same DP release


def test_mu_zero_adds_no_hook_and_changes_nothing(
    digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_hook(*args: object) -> None:
        raise AssertionError("mu = 0 must leave the optimizer as it is")

    monkeypatch.setattr(trainer_module, "_add_proximal_term", no_hook)
    unset, _ = train(digits, mu=None, dp=False)
    zero, _ = train(digits, mu=0.0, dp=False)
    for k, w in unset.weights.items():
        np.testing.assert_array_equal(w, zero.weights[k])


def test_under_dp_the_term_is_added_after_the_noise_once_per_step(
    digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    add_noise = ghost.DPOptimizerFastGradientClipping.add_noise
    add_term = trainer_module._add_proximal_term

    def noised(self: ghost.DPOptimizerFastGradientClipping) -> None:
        add_noise(self)
        events.append("noise")

    def termed(optimizer: torch.optim.Optimizer, model: nn.Module, mu: float) -> None:
        add_term(optimizer, model, mu)
        optimizer.register_step_pre_hook(lambda *_: events.append("term"))  # runs after it

    monkeypatch.setattr(ghost.DPOptimizerFastGradientClipping, "add_noise", noised)
    monkeypatch.setattr(trainer_module, "_add_proximal_term", termed)
    result, _ = train(digits, mu=0.5, dp=True)
    assert events == ["noise", "term"] * result.steps
