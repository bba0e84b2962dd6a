"""The evaluation hook of an aggregating node: ``function(model, **kwargs) -> metrics``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from fedsov.config import EvaluationConfig, ModelConfig
from fedsov.exceptions import ConfigError
from fedsov.modelref import build_model, load_weights
from fedsov.refs import resolve_ref

__all__ = ["Evaluator", "make_evaluator"]

Evaluator = Callable[[Mapping[str, np.ndarray]], Mapping[str, float]]


def make_evaluator(model: ModelConfig, evaluation: EvaluationConfig) -> Evaluator | None:
    """Resolve the configured function now (errors at start-up, not after round 1)."""
    ref = evaluation.function
    if ref is None:
        return None
    fn = resolve_ref(ref, what="evaluation function")
    module = build_model(model.factory, model.kwargs)
    kwargs = evaluation.kwargs

    def evaluate(arrays: Mapping[str, np.ndarray]) -> Mapping[str, float]:
        load_weights(module, arrays)
        result = fn(module, **kwargs)
        if not isinstance(result, Mapping):
            raise ConfigError(f"evaluation function {ref!r} must return a mapping of metrics")
        return {str(k): float(v) for k, v in result.items()}

    return evaluate
