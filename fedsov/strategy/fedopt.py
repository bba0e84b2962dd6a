"""Server optimizers: FedAdam, FedYogi, FedAdagrad (Reddi et al. 2021) and FedAvgM
(Hsu et al. 2019), exactly as Flower's.

The round folds FedAvg's weighted mean Δ of the updates (O(model)); ``write_result``
then takes one server step on it, slice by slice: Δ is Flower's pseudo-gradient
``aggregate - current`` (FedAvgM's is its negative). With server round t (the
strategy's steps so far + 1, Flower's ``server_round`` when every round completes):

- FedAdam: m = β1·m + (1-β1)·Δ, v = β2·v + (1-β2)·Δ², x += η·√(1-β2^(t+1)) / (1-β1^(t+1))
  · m / (√v + τ) (Flower's bias correction, its exponent included);
- FedYogi: m as Adam's, v -= (1-β2)·Δ²·sign(v - Δ²), x += η·m / (√v + τ);
- FedAdagrad: v += Δ², x += η·Δ / (√v + τ);
- FedAvgM: u = μ·u - Δ, x -= η·u (plain FedAvg when η = 1 and μ = 0).

Moments are model-sized, in the running sums' precision (the model's, float16
widened to float32; Flower's FedAdam turns a float32 model into float64 through its
float64 step size, which fedsov keeps a Python float). They are ``arrays()``: the
engine stores them beside each round's model, in the commit that names it.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from fedsov.codec import Manifest
from fedsov.config.base import Number
from fedsov.exceptions import StateError
from fedsov.strategy.base import Strategy
from fedsov.strategy.fedavg import FedAvgAggregate
from fedsov.strategy.settings import checked_settings

__all__ = ["FedAdagrad", "FedAdam", "FedAvgM", "FedYogi", "ServerOptimizer"]

_SLICE = 1 << 20  # elements per step when writing the result

Rate = Annotated[Number, Field(gt=0.0)]
Decay = Annotated[Number, Field(ge=0.0, lt=1.0)]
Moments = dict[str, np.ndarray]  # moment name -> this slice of it


class ServerOptimizer(Strategy):
    """FedAvg's mean update, then a server step that keeps model-sized moments."""

    moment_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.steps = 0  # server steps taken (rounds that produced a model)
        self.moments: dict[str, dict[str, np.ndarray]] = {}  # moment -> tensor -> flat

    @abstractmethod
    def step(self, delta: np.ndarray, moments: Moments, server_round: int) -> np.ndarray:
        """Update ``moments`` (slices) in place from ``delta``; the step to add to the model."""

    def start_round(self, manifest: Manifest) -> ServerOptAggregate:
        aggregate = ServerOptAggregate(self, manifest)
        self._check_moments(aggregate)
        return aggregate

    def _check_moments(self, aggregate: ServerOptAggregate) -> None:
        """Zero moments on the first round; restored ones must fit the model."""
        for moment in self.moment_names:
            tensors = self.moments.setdefault(moment, {})
            for spec, sums in zip(aggregate.manifest.tensors, aggregate.sums, strict=True):
                kept = tensors.setdefault(spec.name, np.zeros(spec.numel, dtype=sums.dtype))
                if kept.shape != sums.shape or kept.dtype != sums.dtype:
                    raise StateError(
                        f"{self.name}: stored moment {moment}/{spec.name} is {kept.dtype}"
                        f"{list(kept.shape)}, the model needs {sums.dtype}{list(sums.shape)}"
                    )

    def state(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Steps as committed (none in an empty state, before the first commit)."""
        self.steps = int(state.get("steps", 0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            f"{moment}/{tensor}": values
            for moment, tensors in self.moments.items()
            for tensor, values in tensors.items()
        }

    def restore_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.moments = {}
        for key, values in arrays.items():
            moment, _, tensor = key.partition("/")
            if moment not in self.moment_names or not tensor:
                raise StateError(f"{self.name}: unknown stored moment {key!r}")
            self.moments.setdefault(moment, {})[tensor] = np.array(values).reshape(-1)


class ServerOptAggregate(FedAvgAggregate):
    """FedAvg's running sums; ``write_result`` takes the strategy's server step."""

    def __init__(self, strategy: ServerOptimizer, manifest: Manifest) -> None:
        super().__init__(manifest)
        self.strategy = strategy
        self._written = False

    @property
    def sums(self) -> list[np.ndarray]:
        return self._sums

    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        if self.total_weight <= 0:
            raise ValueError(f"{self.strategy.name} needs at least one committed update")
        if self._written:
            raise RuntimeError("this round's server step was taken already")
        self._written = True
        strategy = self.strategy
        server_round = strategy.steps + 1
        for spec, total in zip(self.manifest.tensors, self._sums, strict=True):
            src = base[spec.name].reshape(-1)
            dst = out[spec.name].reshape(-1)
            moments = {m: strategy.moments[m][spec.name] for m in strategy.moment_names}
            for start in range(0, spec.numel, _SLICE):
                end = min(start + _SLICE, spec.numel)
                delta = total[start:end] / total.dtype.type(self.total_weight)
                part = {m: values[start:end] for m, values in moments.items()}
                step = strategy.step(delta, part, server_round)
                step += src[start:end]
                with np.errstate(over="ignore"):  # inf, which GlobalModel refuses
                    dst[start:end] = step
        strategy.steps += 1


class _AdaptiveOptimizer(ServerOptimizer):
    moment_names: tuple[str, ...] = ("m", "v")

    def __init__(self, *, eta: float, beta_1: float, beta_2: float, tau: float) -> None:
        super().__init__()
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau

    def first_moment(self, delta: np.ndarray, m: np.ndarray) -> None:
        m *= self.beta_1
        m += (1 - self.beta_1) * delta

    def scaled(self, rate: float, m: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``rate·m / (√v + τ)``."""
        denominator = np.sqrt(v)
        denominator += self.tau
        out = rate * m
        out /= denominator
        return out


class FedAdam(_AdaptiveOptimizer):
    name = "fedadam"

    @checked_settings
    def __init__(
        self,
        *,
        eta: Rate = 1e-1,
        beta_1: Decay = 0.9,
        beta_2: Decay = 0.99,
        tau: Rate = 1e-3,
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)

    def step(self, delta: np.ndarray, moments: Moments, server_round: int) -> np.ndarray:
        m, v = moments["m"], moments["v"]
        self.first_moment(delta, m)
        v *= self.beta_2
        v += (1 - self.beta_2) * (delta * delta)
        t = server_round + 1.0
        rate = self.eta * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)
        return self.scaled(rate, m, v)


class FedYogi(_AdaptiveOptimizer):
    name = "fedyogi"

    @checked_settings
    def __init__(
        self,
        *,
        eta: Rate = 1e-2,
        beta_1: Decay = 0.9,
        beta_2: Decay = 0.99,
        tau: Rate = 1e-3,
    ) -> None:
        super().__init__(eta=eta, beta_1=beta_1, beta_2=beta_2, tau=tau)

    def step(self, delta: np.ndarray, moments: Moments, server_round: int) -> np.ndarray:
        m, v = moments["m"], moments["v"]
        self.first_moment(delta, m)
        squared = delta * delta
        v -= (1.0 - self.beta_2) * squared * np.sign(v - squared)
        return self.scaled(self.eta, m, v)


class FedAdagrad(_AdaptiveOptimizer):
    name = "fedadagrad"
    moment_names = ("v",)  # β1 = 0: Flower's m is Δ itself

    @checked_settings
    def __init__(self, *, eta: Rate = 1e-1, tau: Rate = 1e-3) -> None:
        super().__init__(eta=eta, beta_1=0.0, beta_2=0.0, tau=tau)

    def step(self, delta: np.ndarray, moments: Moments, server_round: int) -> np.ndarray:
        v = moments["v"]
        v += delta * delta
        return self.scaled(self.eta, delta, v)


class FedAvgM(ServerOptimizer):
    """``server_learning_rate`` η and ``server_momentum`` μ, Flower's names and defaults."""

    name = "fedavgm"

    @checked_settings
    def __init__(
        self,
        *,
        server_learning_rate: Rate = 1.0,
        server_momentum: Annotated[Number, Field(ge=0.0)] = 0.0,
    ) -> None:
        super().__init__()
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.moment_names = ("momentum",) if server_momentum > 0 else ()

    def step(self, delta: np.ndarray, moments: Moments, server_round: int) -> np.ndarray:
        if not self.moment_names:
            return self.server_learning_rate * delta
        momentum = moments["momentum"]
        momentum *= self.server_momentum
        momentum -= delta  # the pseudo-gradient is current - aggregate = -Δ
        return -self.server_learning_rate * momentum
