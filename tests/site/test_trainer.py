"""DPTrainer: privacy composition across rounds, learning, determinism and config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from opacus.optimizers import optimizer as opacus_optimizer
from opacus.optimizers import optimizer_fast_gradient_clipping
from sklearn.datasets import load_digits
from torch import nn

from fedsov.config import PrivacyConfig, TrainingPlan
from fedsov.exceptions import ConfigError, DataError, TrainingError
from fedsov.privacy.accountant import MechanismStep, compute_epsilon
from fedsov.randomness import REPRODUCIBLE_ENV
from fedsov.site.data import Dataset
from fedsov.site.trainer import GRAD_SAMPLE_MODE, DPTrainer, TrainResult, evaluate

DELTA = 1e-5


@pytest.fixture(autouse=True)
def _secret_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    """DP randomness is secret unless a test turns the insecure reproducible mode on."""
    monkeypatch.delenv(REPRODUCIBLE_ENV, raising=False)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    d = load_digits()
    return Dataset((d.data / 16.0).astype(np.float32), d.target.astype(np.int64))


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def load(weights: dict[str, np.ndarray]) -> nn.Module:
    model = mlp()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return model


def trainer(
    data: Dataset,
    *,
    enabled: bool = True,
    seed: int = 0,
    batch_size: int = 64,
    accountant: str = "pld",
    epochs: int = 1,
    lr: float = 1.0,
    momentum: float = 0.0,
) -> DPTrainer:
    return DPTrainer(
        data=data,
        train=TrainingPlan(
            local_epochs=epochs, batch_size=batch_size, learning_rate=lr, momentum=momentum
        ),
        privacy=PrivacyConfig(
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            delta=DELTA,
            accountant=accountant,
            enabled=enabled,
        ),
        device="cpu",
        seed=seed,
    )


def run_rounds(t: DPTrainer, rounds: int) -> list[TrainResult]:
    """FedAvg with one site: each round starts from the previous round's weights."""
    weights = {k: v.numpy().copy() for k, v in mlp().state_dict().items()}
    results = []
    for r in range(rounds):
        results.append(t.train_round(load(weights), round_seed=r))
        weights = results[-1].weights
    return results


def test_epsilon_composes_over_rounds(digits: Dataset) -> None:
    t = trainer(digits)
    results = run_rounds(t, 3)
    per_round = math.ceil(len(digits) / 64)
    assert [r.steps for r in results] == [per_round] * 3
    assert [r.total_steps for r in results] == [per_round, 2 * per_round, 3 * per_round]
    last = results[-1]
    assert last.sample_rate == 1 / per_round
    expected = compute_epsilon(
        history=[MechanismStep(1.0, last.sample_rate, last.total_steps)], delta=DELTA
    )
    assert last.epsilon == pytest.approx(expected, rel=1e-9)
    assert t.epsilon() == pytest.approx(last.epsilon, rel=1e-9)
    assert t.history == [
        MechanismStep(noise_multiplier=1.0, sample_rate=1 / per_round, steps=3 * per_round)
    ]
    assert results[0].epsilon < results[1].epsilon < results[2].epsilon
    assert (last.delta, last.noise_multiplier, last.max_grad_norm) == (DELTA, 1.0, 1.0)
    assert last.num_examples == len(digits)


def test_changed_batch_size_is_accounted(digits: Dataset) -> None:
    t = trainer(digits)
    t.train_round(mlp(), round_seed=0)
    t.train = TrainingPlan(local_epochs=1, batch_size=128, learning_rate=1.0)
    result = t.train_round(mlp(), round_seed=1)
    expected = compute_epsilon(
        history=[
            MechanismStep(1.0, 1 / math.ceil(len(digits) / 64), math.ceil(len(digits) / 64)),
            MechanismStep(1.0, 1 / math.ceil(len(digits) / 128), math.ceil(len(digits) / 128)),
        ],
        delta=DELTA,
    )
    assert len(t.history) == 2
    assert result.epsilon == pytest.approx(expected, rel=1e-9)


def test_dp_training_learns(digits: Dataset) -> None:
    acc0, loss0 = evaluate(mlp(), digits)
    model = load(run_rounds(trainer(digits), 3)[-1].weights)
    acc, loss = evaluate(model, digits)
    assert loss < loss0 / 2
    assert acc > 0.8 > acc0


def test_weights_keys_dtype_and_clean_model(digits: Dataset) -> None:
    model = mlp()
    keys = list(model.state_dict())
    result = trainer(digits).train_round(model, round_seed=0)
    assert list(result.weights) == keys
    for name, w in result.weights.items():
        assert isinstance(w, np.ndarray) and w.dtype == np.float32, name
        np.testing.assert_array_equal(w, model.state_dict()[name].numpy())
    # Opacus' hooks and per-sample attributes are gone from the caller's model.
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())
    assert math.isfinite(result.train_loss) and result.seconds > 0


def test_dp_rounds_draw_secret_randomness(digits: Dataset) -> None:
    """Same state, config seed and round seed: a DP round cannot be replayed."""
    a = trainer(digits, seed=7).train_round(mlp(), round_seed=3)
    b = trainer(digits, seed=7).train_round(mlp(), round_seed=3)
    assert all(not np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert (a.steps, a.sample_rate) == (b.steps, b.sample_rate)
    assert a.epsilon == pytest.approx(b.epsilon, rel=1e-9)


@pytest.mark.parametrize("reproducible", [False, True])
def test_poisson_sampler_is_secret_too(
    digits: Dataset, monkeypatch: pytest.MonkeyPatch, reproducible: bool
) -> None:
    """With σ = 0 only the Poisson masks vary: they are not replayable either."""
    if reproducible:
        monkeypatch.setenv(REPRODUCIBLE_ENV, "1")

    def noiseless_round() -> TrainResult:
        return DPTrainer(
            data=digits,
            train=TrainingPlan(local_epochs=1, batch_size=64, learning_rate=1.0),
            privacy=PrivacyConfig(noise_multiplier=0.0, max_grad_norm=1.0, delta=DELTA),
            device="cpu",
            seed=7,
        ).train_round(mlp(), round_seed=3)

    a, b = noiseless_round(), noiseless_round()
    same = all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert same is reproducible


def test_insecure_reproducible_mode_repeats_dp_rounds(
    digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REPRODUCIBLE_ENV, "1")
    a = trainer(digits, seed=7).train_round(mlp(), round_seed=3)
    b = trainer(digits, seed=7).train_round(mlp(), round_seed=3)
    c = trainer(digits, seed=7).train_round(mlp(), round_seed=4)
    d = trainer(digits, seed=8).train_round(mlp(), round_seed=3)
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k])
    assert a.train_loss == b.train_loss
    for other in (c, d):
        assert any(not np.array_equal(a.weights[k], other.weights[k]) for k in a.weights)


def test_dp_noise_is_secure_mode_noise(digits: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opacus' floating-point-attack resistant noise, from a seeded torch generator (no
    torchcsprng), in the optimizer the trainer uses."""
    calls: list[tuple[bool, object]] = []
    original = opacus_optimizer._generate_noise

    def spy(
        std: float,
        reference: torch.Tensor,
        generator: object = None,
        secure_mode: bool = False,
    ) -> torch.Tensor:
        calls.append((secure_mode, generator))
        return original(std, reference, generator, secure_mode)

    # The ghost-clipping optimizer imports the function by name; patch both references.
    monkeypatch.setattr(opacus_optimizer, "_generate_noise", spy)
    monkeypatch.setattr(optimizer_fast_gradient_clipping, "_generate_noise", spy)
    assert GRAD_SAMPLE_MODE == "ghost"
    result = trainer(digits).train_round(mlp(), round_seed=0)
    params = len(list(mlp().parameters()))
    assert len(calls) == result.steps * params
    assert all(secure is True for secure, _ in calls)
    assert all(isinstance(generator, torch.Generator) for _, generator in calls)
    assert len({id(generator) for _, generator in calls}) == 1


def test_dp_disabled(digits: Dataset) -> None:
    t = trainer(digits, enabled=False, lr=0.2, momentum=0.5, epochs=3)
    assert t.epsilon() == math.inf
    results = run_rounds(t, 2)
    assert all(r.epsilon == math.inf for r in results)
    assert t.history == []
    assert results[-1].total_steps == 6 * math.ceil(len(digits) / 64)
    acc, _ = evaluate(load(results[-1].weights), digits)
    assert acc > 0.9
    again = run_rounds(trainer(digits, enabled=False, lr=0.2, momentum=0.5, epochs=3), 2)[-1]
    for k, w in results[-1].weights.items():
        np.testing.assert_array_equal(w, again.weights[k])


def test_empty_poisson_batches(digits: Dataset) -> None:
    """q = 1/20 over 20 examples: a batch is empty with probability 0.95^20 = 0.36, so
    among 60 batches some are empty (all 60 non-empty: probability 0.64^60 < 1e-11)."""
    small = digits.subset(np.arange(20))
    t = trainer(small, batch_size=1, epochs=3)
    model = mlp()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sizes: list[int] = []  # the batch of every forward pass, as the model sees it
    hook = model.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    try:
        result = t.train_round(model, round_seed=0)
    finally:
        hook.remove()
    assert len(sizes) == result.steps == 60 and result.sample_rate == 1 / 20
    assert 0 in sizes and max(sizes) > 0  # empty batches happened, and real ones
    # An empty batch is a step (zero gradient plus noise), accounted like any other...
    assert t.history == [MechanismStep(1.0, 1 / 20, 60)]
    expected = compute_epsilon(history=[MechanismStep(1.0, 1 / 20, 60)], delta=DELTA)
    assert result.epsilon == pytest.approx(expected, rel=1e-9)
    # ...and leaves the loss (over the examples seen) and the weights finite, and trained.
    assert math.isfinite(result.train_loss) and result.train_loss > 0
    for name, w in result.weights.items():
        assert np.isfinite(w).all(), name
        assert not np.array_equal(w, before[name].numpy()), name


def test_evaluate_restores_mode(digits: Dataset) -> None:
    model = mlp()
    model.train()
    acc, loss = evaluate(model, digits, batch_size=100)
    assert 0.0 <= acc <= 1.0 and loss > 0 and model.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda(digits: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPRODUCIBLE_ENV, "1")  # so that two rounds can be compared
    t = DPTrainer(
        data=digits,
        train=TrainingPlan(local_epochs=1, batch_size=64, learning_rate=1.0),
        privacy=PrivacyConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=DELTA),
        device="cuda",
    )
    model = mlp()
    result = t.train_round(model, round_seed=0)
    again = DPTrainer(data=digits, train=t.train, privacy=t.privacy, device="cuda").train_round(
        mlp(), round_seed=0
    )
    assert next(model.parameters()).is_cuda
    for k, w in result.weights.items():
        assert isinstance(w, np.ndarray) and w.dtype == np.float32
        np.testing.assert_array_equal(w, again.weights[k])
    acc, _ = evaluate(load(result.weights), digits, device="cuda")
    assert acc > 0.5


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"local_epochs": 0}, "local_epochs"),
        ({"local_epochs": 1.5}, "local_epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
    ],
)
def test_bad_train_config(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"local_epochs": 1, "batch_size": 8, "learning_rate": 0.1, **kwargs}
    with pytest.raises(ConfigError, match=field):
        TrainingPlan(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"noise_multiplier": -0.1}, "noise_multiplier"),
        ({"noise_multiplier": math.inf}, "noise_multiplier"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"accountant": "moments"}, "accountant"),
        ({"enabled": 1}, "enabled"),
    ],
)
def test_bad_privacy_config(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "noise_multiplier": 1.0,
        "max_grad_norm": 1.0,
        "delta": 1e-5,
        **kwargs,
    }
    with pytest.raises(ConfigError, match=field):
        PrivacyConfig(**args)  # type: ignore[arg-type]


def test_bad_trainer_inputs(digits: Dataset) -> None:
    empty = Dataset(np.zeros((0, 64), np.float32), np.zeros((0,), np.int64))
    with pytest.raises(DataError, match="empty"):
        trainer(empty)
    t = trainer(digits)
    with pytest.raises(ConfigError, match="train"):
        t.train = "fast"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="round_seed"):
        t.train_round(mlp(), round_seed=1.5)  # type: ignore[arg-type]
    bn = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Linear(16, 10))
    with pytest.raises(TrainingError, match="BatchNorm"):
        t.train_round(bn, round_seed=0)
    assert t.total_steps == 0 and t.history == []
