"""Sample-level DP for Flower app authors: ``make_private`` inside a fedsov site's round.

A fedsov site that runs a Flower app with ``[trainer] dp = "sample"`` opens a round
for the app's ``Context``; the app's train handler calls::

    from fedsov.site.flower_privacy import make_private

    model, optimizer, loader = make_private(context, model, optimizer, loader)

and trains with what it gets back. That is fedsov's own DP-SGD (Opacus, Poisson
sampling, flat clipping at ``[privacy] max_grad_norm``, noise multiplier
``[privacy] noise_multiplier``, secure-mode noise and sampling from the OS CSPRNG).
The site counts the steps Opacus took, records them in its privacy ledger and
reports the round as sample-level DP; it adds no update-level noise. A round in
which the app did not call it is declined (nothing leaves).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader

from fedsov.config import PrivacyConfig
from fedsov.exceptions import FedsovError, TrainingError
from fedsov.privacy.accountant import MechanismStep
from fedsov.site.trainer import make_dp_sgd, spent_steps

__all__ = ["PrivateRound", "make_private", "private_round"]

GRAD_SAMPLE_MODE = "hooks"
"""The app keeps its own loss function: hooks need no wrapped criterion (ghost does)."""


@dataclass
class PrivateRound:
    """One round of one Flower app at a site: what ``make_private`` set up, if it was called."""

    privacy: PrivacyConfig
    sampler_seed: int
    noise_seed: int
    engine: PrivacyEngine | None = None
    wrapped: Any = None  # Opacus' GradSampleModule, unwrapped when the round ends
    dataset_size: int = 0
    _used: bool = field(default=False, repr=False)

    def steps(self) -> list[MechanismStep]:
        """The DP-SGD steps the app took through the wrapped optimizer."""
        return spent_steps(self.engine) if self.engine is not None else []


_rounds: dict[int, PrivateRound] = {}  # by id() of the app's Context, while it trains
_lock = threading.Lock()


@contextmanager
def private_round(context: object, round: PrivateRound) -> Iterator[PrivateRound]:
    """Let ``make_private(context, ...)`` find ``round`` while the app trains."""
    with _lock:
        _rounds[id(context)] = round
    try:
        yield round
    finally:
        with _lock:
            _rounds.pop(id(context), None)
        if round.wrapped is not None:
            round.wrapped.to_standard_module()  # removes Opacus' hooks from the app's model


def make_private(
    context: object,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader[Any],
) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader[Any]]:
    """``(model, optimizer, data_loader)`` wrapped for DP-SGD with the site's ``[privacy]``.

    Call it once a round, from the train handler, with the ``Context`` the handler got;
    train with the returned objects (``model.state_dict()`` of the model passed in holds
    the trained weights). The loader's sampling generator is replaced by a secret one.
    Without DP (``[privacy] enabled = false``) the three come back unchanged.
    """
    with _lock:
        round = _rounds.get(id(context))
    if round is None:
        raise FedsovError(
            "make_private works in a fedsov site's round only: set [trainer] dp = 'sample' "
            "in the site config and pass the Context the train handler was given"
        )
    if round._used:
        raise TrainingError("make_private was called twice in one round: call it once")
    round._used = True
    if not round.privacy.enabled:
        return model, optimizer, data_loader
    device = next(model.parameters()).device
    data_loader.generator = torch.Generator().manual_seed(round.sampler_seed)
    engine, (dp_model, dp_optimizer, dp_loader) = make_dp_sgd(
        round.privacy,
        module=model,
        optimizer=optimizer,
        data_loader=data_loader,
        noise_generator=torch.Generator(device=device).manual_seed(round.noise_seed),
        grad_sample_mode=GRAD_SAMPLE_MODE,
    )
    round.engine, round.wrapped = engine, dp_model
    round.dataset_size = len(data_loader.dataset)  # type: ignore[arg-type]
    return dp_model, dp_optimizer, dp_loader
