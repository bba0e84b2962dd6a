"""Local training of one site: DP-SGD with Opacus (Poisson sampling, flat clipping) or plain SGD.

A :class:`DPTrainer` lives as long as the site: it keeps the privacy history of every round
it trained, so the epsilon it reports composes over all rounds.

The randomness a DP round rests on (Poisson masks, DP-SGD noise, torch's RNG) is seeded
from the OS CSPRNG every round (:mod:`fedsov.randomness`): the config seed and the round
seed are public, and an upstream that knew all seeds could replay the round on neighbouring
datasets and tell which one the site holds. The noise is drawn the floating-point-attack
resistant way (Opacus' secure-mode noise) without ``torchcsprng``. Rounds without DP claim
no guarantee and stay reproducible from the config seed and the round seed.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedsov.config import PrivacyConfig, TrainingPlan
from fedsov.exceptions import ConfigError, DataError, FedsovError, TrainingError
from fedsov.messages import PrivacyLevel
from fedsov.privacy.accountant import (
    MechanismStep,
    compute_epsilon,
    merge_history,
)
from fedsov.privacy.evaluation import EvalOutcome, MetricValue
from fedsov.privacy.ledger import PRIVACY_UNIT
from fedsov.randomness import secret_seed
from fedsov.site.data import Dataset

__all__ = [
    "GRAD_SAMPLE_MODE",
    "DPTrainer",
    "TrainResult",
    "evaluate",
    "make_dp_sgd",
    "resolve_device",
    "site_epsilon",
    "spent_steps",
]

GRAD_SAMPLE_MODE = "ghost"
"""Opacus per-sample clipping mode: ghost clipping (flat only) is the fastest here."""

_SEED_MASK = (1 << 64) - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainResult:
    """What one local round produced; ``weights`` has the model's own state_dict keys."""

    weights: dict[str, np.ndarray]
    num_examples: int
    steps: int
    total_steps: int
    sample_rate: float
    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    train_loss: float
    seconds: float
    level: PrivacyLevel = PrivacyLevel.SAMPLE  # what ε protects (NONE without DP)
    metrics: Mapping[str, float] = field(default_factory=dict)  # data-derived: kept local


def resolve_device(device: str | None) -> str:
    """``device`` itself, or ``"cuda"`` when available and ``"cpu"`` otherwise."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device: invalid torch device {device!r}: {exc}") from exc
    return device


def _tensors(data: Dataset) -> TensorDataset:
    if len(data.y) == 0:
        raise DataError("cannot train or evaluate on an empty dataset")
    if len(data.x) != len(data.y):
        raise DataError(f"{len(data.x)} feature rows but {len(data.y)} labels")
    x = torch.from_numpy(np.ascontiguousarray(data.x, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(data.y, dtype=np.int64))
    return TensorDataset(x, y)


def _seeds(seed: int, round_seed: int, n: int) -> list[int]:
    """Public, reproducible seeds: for rounds without DP only."""
    state = np.random.SeedSequence([seed & _SEED_MASK, round_seed & _SEED_MASK])
    return [int(s) for s in state.generate_state(n, dtype=np.uint64) >> np.uint64(1)]


@contextmanager
def _forked_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Seed torch's global RNG (dropout etc.) for the block and restore it afterwards."""
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _export(model: nn.Module) -> dict[str, np.ndarray]:
    """CPU copies of ``model.state_dict()``; floating tensors become float32."""
    weights: dict[str, np.ndarray] = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach()
        dtype = torch.float32 if t.is_floating_point() else t.dtype
        weights[name] = t.to(device="cpu", dtype=dtype, copy=True).numpy()
        if t.is_floating_point() and not np.isfinite(weights[name]).all():
            raise TrainingError(f"local training diverged: {name} holds NaN or Inf")
    return weights


def _add_proximal_term(optimizer: torch.optim.Optimizer, model: nn.Module, mu: float) -> None:
    """FedProx: before each step of ``optimizer``, add μ(w - w_global) to each gradient,
    the gradient of μ/2·||w - w_global||², w_global being ``model``'s weights now.

    The hook runs on the plain optimizer, which Opacus' DPOptimizer steps once it has
    clipped and noised the per-sample gradients: the term depends on no record, so it
    is post-processing and the DP guarantee is unchanged.
    """
    anchors = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]

    def add(_optimizer: torch.optim.Optimizer, _args: object, _kwargs: object) -> None:
        with torch.no_grad():
            for p, w_global in anchors:
                if p.grad is not None:
                    p.grad.add_(p - w_global, alpha=mu)

    optimizer.register_step_pre_hook(add)


def site_epsilon(privacy: PrivacyConfig, history: Sequence[MechanismStep]) -> float:
    """A site's ε after the releases ``history`` under ``privacy`` (inf with DP off)."""
    if not privacy.enabled:
        return math.inf
    return compute_epsilon(history=history, delta=privacy.delta, accountant=privacy.accountant)


def make_dp_sgd(
    privacy: PrivacyConfig,
    *,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader[Any],
    noise_generator: torch.Generator,
    grad_sample_mode: str,
    criterion: nn.Module | None = None,
) -> tuple[PrivacyEngine, tuple[Any, ...]]:
    """fedsov's DP-SGD: Opacus with Poisson sampling, flat clipping at ``privacy``'s C and
    σ, secure-mode noise from ``noise_generator``; returns the engine and what its
    ``make_private`` returned (with ``criterion``: ghost clipping's 4-tuple)."""
    with warnings.catch_warnings():
        # The engine keeps secure_mode=False: True imports torchcsprng (unmaintained, does
        # not build) for its generators. Ours are seeded from the OS CSPRNG and the
        # optimizer draws secure noise (below), so its "Secure RNG turned off" is moot.
        warnings.filterwarnings("ignore", "Secure RNG turned off", UserWarning)
        # Opacus' accountant only counts the steps here; ε is fedsov's (replace-one).
        engine = PrivacyEngine(accountant="rdp")
    wrapped: tuple[Any, ...] = engine.make_private(
        module=module,
        optimizer=optimizer,
        data_loader=data_loader,
        noise_multiplier=float(privacy.noise_multiplier),
        max_grad_norm=float(privacy.max_grad_norm),
        poisson_sampling=True,
        clipping="flat",
        noise_generator=noise_generator,
        grad_sample_mode=grad_sample_mode,
        **({"criterion": criterion} if criterion is not None else {}),
    )
    # Opacus' floating-point-attack resistant noise (sum of 4 Gaussians / 2, arXiv:2107.10138
    # section 5.1), drawn from our generator: DPOptimizer.add_noise (the ghost-clipping
    # optimizer's too) passes this attribute to _generate_noise. The engine's own
    # secure_mode only picks torchcsprng generators, which we do not use.
    wrapped[1].secure_mode = True
    return engine, wrapped


def spent_steps(engine: PrivacyEngine) -> list[MechanismStep]:
    """The DP-SGD steps ``engine``'s accountant counted."""
    return [
        MechanismStep(noise_multiplier=float(sigma), sample_rate=float(q), steps=int(n))
        for sigma, q, n in engine.accountant.history
    ]


class DPTrainer:
    """Trains a site's model round after round and accounts the privacy of all rounds."""

    def __init__(
        self,
        *,
        data: Dataset,
        train: TrainingPlan,
        privacy: PrivacyConfig,
        device: str | None = None,
        seed: int = 0,
        prior: Sequence[MechanismStep] = (),
    ) -> None:
        """``prior``: releases of earlier runs (from the site's privacy ledger) to compose with."""
        if not isinstance(privacy, PrivacyConfig):
            raise ConfigError(f"privacy must be a PrivacyConfig, got {type(privacy).__name__}")
        if not _is_int(seed):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        self.train = train
        self._privacy = privacy
        self._dataset = _tensors(data)
        self.device = resolve_device(device)
        self.seed = seed
        self._history: list[MechanismStep] = merge_history(prior)
        self._total_steps = sum(s.steps for s in self._history)
        self._epsilon = site_epsilon(privacy, self._history)

    def planned_step(self) -> MechanismStep:
        """The DP-SGD release the next round will make (Opacus: q = 1 / batches)."""
        batches = math.ceil(self.num_examples / self.train.batch_size)
        return MechanismStep(
            noise_multiplier=float(self.privacy.noise_multiplier),
            sample_rate=self.sample_rate,
            steps=self.train.local_epochs * batches,
        )

    def epsilon_after(self, extra: Sequence[MechanismStep]) -> float:
        """ε if ``extra`` were released on top of everything so far."""
        return site_epsilon(self.privacy, [*self._history, *extra])

    def evaluate_global(self, model: nn.Module, *, server_round: int) -> EvalOutcome:
        """Accuracy and loss (each record's clipped to ``eval_loss_clip``) of the model
        received, on the local data; released per record."""
        clip = float(self.privacy.eval_loss_clip)
        accuracy, loss = _scores(model, self._dataset, device=self.device, loss_clip=clip)
        return EvalOutcome(
            metrics=(
                MetricValue("accuracy", accuracy, 0.0, 1.0),
                MetricValue("loss", loss, 0.0, clip),
            ),
            examples=self.num_examples,
            unit=PRIVACY_UNIT,
        )

    def eval_step(self) -> MechanismStep:
        """The federated evaluation's release: one Gaussian mechanism (σ = z, q = 1)."""
        return MechanismStep(float(self.privacy.eval_noise_multiplier), 1.0, 1)

    def add_release(self, step: MechanismStep) -> None:
        """Count ``step``, released by the site beside training, in this trainer's ε."""
        if self.privacy.enabled:
            self._history = merge_history([*self._history, step])
            self._epsilon = site_epsilon(self.privacy, self._history)

    @property
    def train(self) -> TrainingPlan:
        """The local optimisation settings; may be replaced between rounds."""
        return self._train

    @train.setter
    def train(self, value: TrainingPlan) -> None:
        if not isinstance(value, TrainingPlan):
            raise ConfigError(f"train must be a TrainingPlan, got {type(value).__name__}")
        self._train = value

    @property
    def privacy(self) -> PrivacyConfig:
        """The DP settings, fixed for the trainer's life."""
        return self._privacy

    @property
    def num_examples(self) -> int:
        return len(self._dataset)

    @property
    def sample_rate(self) -> float:
        """Poisson sampling rate: 1 / batches per epoch, as Opacus computes it."""
        return 1.0 / math.ceil(self.num_examples / self.train.batch_size)

    @property
    def history(self) -> list[MechanismStep]:
        """Every DP-SGD step taken so far, neighbours with equal parameters merged."""
        return list(self._history)

    @property
    def total_steps(self) -> int:
        return self._total_steps

    def epsilon(self) -> float:
        """Epsilon at ``privacy.delta`` over all rounds so far (inf if DP is disabled)."""
        return self._epsilon

    def train_round(
        self, model: nn.Module, *, round_seed: int, server_round: int = 0
    ) -> TrainResult:
        """Train ``model`` (holding the global weights) for ``train.local_epochs`` epochs.

        ``server_round`` is unused (DP-SGD needs only the seeds); a Flower app gets it.

        The model is moved to ``self.device`` and trained in place. A round that raises
        releases no weights, so its steps are not added to the privacy history.
        """
        if not isinstance(model, nn.Module):
            raise TrainingError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not _is_int(round_seed):
            raise ConfigError(f"round_seed must be an integer, got {round_seed!r}")
        started = time.perf_counter()
        device = torch.device(self.device)
        if self.privacy.enabled:
            # Secret every round; derived from the public seeds only in the insecure
            # reproducible mode (FEDSOV_INSECURE_REPRODUCIBLE=1, tests only).
            sampler_seed, noise_seed, torch_seed = (
                secret_seed([self.seed, round_seed, i]) for i in range(3)
            )
        else:
            sampler_seed, noise_seed, torch_seed = _seeds(self.seed, round_seed, 3)
        sample_rate = self.sample_rate
        sigma = float(self.privacy.noise_multiplier)
        try:
            model.to(device)
            model.train()
            with _forked_rng(device, torch_seed):
                if self.privacy.enabled:
                    spent, loss = self._train_dp(model, device, sampler_seed, noise_seed)
                    steps = sum(s.steps for s in spent)
                else:
                    spent = []
                    steps, loss = self._train_plain(model, device, sampler_seed)
        except FedsovError:
            raise
        except Exception as exc:
            raise TrainingError(f"local training failed: {type(exc).__name__}: {exc}") from exc
        self._total_steps += steps
        if self.privacy.enabled:
            self._history = merge_history([*self._history, *spent])
            self._epsilon = site_epsilon(self.privacy, self._history)
        weights = _export(model)
        return TrainResult(
            weights=weights,
            num_examples=self.num_examples,
            steps=steps,
            total_steps=self._total_steps,
            sample_rate=sample_rate,
            epsilon=self._epsilon,
            delta=float(self.privacy.delta),
            noise_multiplier=sigma,
            max_grad_norm=float(self.privacy.max_grad_norm),
            train_loss=loss,
            seconds=time.perf_counter() - started,
            level=PrivacyLevel.SAMPLE if self.privacy.enabled else PrivacyLevel.NONE,
        )

    def _optimizer(self, model: nn.Module) -> torch.optim.SGD:
        """SGD over ``model``, with FedProx's proximal term when ``proximal_mu`` > 0."""
        optimizer = torch.optim.SGD(
            model.parameters(), lr=self.train.learning_rate, momentum=self.train.momentum
        )
        if self.train.proximal_mu > 0:
            _add_proximal_term(optimizer, model, float(self.train.proximal_mu))
        return optimizer

    def _train_dp(
        self, model: nn.Module, device: torch.device, sampler_seed: int, noise_seed: int
    ) -> tuple[list[MechanismStep], float]:
        """DP-SGD via Opacus; returns (the steps its accountant counted, mean training loss)."""
        loader = DataLoader(
            self._dataset,
            batch_size=self.train.batch_size,
            generator=torch.Generator().manual_seed(sampler_seed),
        )
        engine, (dp_model, optimizer, criterion, dp_loader) = make_dp_sgd(
            self.privacy,
            module=model,
            optimizer=self._optimizer(model),
            data_loader=loader,
            noise_generator=torch.Generator(device=device).manual_seed(noise_seed),
            grad_sample_mode=GRAD_SAMPLE_MODE,
            criterion=nn.CrossEntropyLoss(),
        )
        loss_sum, seen = 0.0, 0
        try:
            for _ in range(self.train.local_epochs):
                for x_cpu, y_cpu in dp_loader:
                    xb, yb = x_cpu.to(device), y_cpu.to(device)
                    optimizer.zero_grad()
                    # An empty Poisson batch still takes a step: zero gradient plus noise.
                    loss = criterion(dp_model(xb), yb)
                    loss.backward()
                    optimizer.step()
                    if len(yb):
                        loss_sum += float(loss.item()) * len(yb)
                        seen += len(yb)
        finally:
            dp_model.to_standard_module()  # removes Opacus hooks from the caller's model
        return spent_steps(engine), loss_sum / seen if seen else math.nan

    def _train_plain(
        self, model: nn.Module, device: torch.device, sampler_seed: int
    ) -> tuple[int, float]:
        """Non-private SGD over shuffled minibatches; returns (steps, mean training loss)."""
        loader = DataLoader(
            self._dataset,
            batch_size=self.train.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(sampler_seed),
        )
        optimizer = self._optimizer(model)
        criterion = nn.CrossEntropyLoss()
        loss_sum, seen, steps = 0.0, 0, 0
        for _ in range(self.train.local_epochs):
            for x_cpu, y_cpu in loader:
                xb, yb = x_cpu.to(device), y_cpu.to(device)
                optimizer.zero_grad()
                loss = criterion(model(xb), yb)
                loss.backward()
                optimizer.step()
                steps += 1
                loss_sum += float(loss.item()) * len(yb)
                seen += len(yb)
        return steps, loss_sum / seen


def evaluate(
    model: nn.Module, data: Dataset, *, batch_size: int = 1024, device: str | None = None
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on ``data``; the model's mode is restored."""
    if not _is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return _scores(model, _tensors(data), device=resolve_device(device), batch_size=batch_size)


def _scores(
    model: nn.Module,
    dataset: TensorDataset,
    *,
    device: str,
    batch_size: int = 1024,
    loss_clip: float | None = None,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy, each record's clipped to ``loss_clip`` if given)."""
    dev = torch.device(device)
    was_training = model.training
    model.to(dev)
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        with torch.no_grad():
            for x_cpu, y_cpu in DataLoader(dataset, batch_size=batch_size):
                xb, yb = x_cpu.to(dev), y_cpu.to(dev)
                logits = model(xb)
                losses = nn.functional.cross_entropy(logits, yb, reduction="none")
                if loss_clip is not None:
                    losses = losses.clamp(max=loss_clip)
                loss_sum += float(losses.sum())
                correct += int((logits.argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    n = len(dataset)
    return correct / n, loss_sum / n
