"""``[model]`` and ``[evaluation]``: ``"module:attr"`` components and their keyword arguments."""

from __future__ import annotations

import dataclasses
from typing import Any

from fedsov.config.base import Section, Str, section

__all__ = ["EvaluationConfig", "ModelConfig"]


@section
class ModelConfig(Section):
    """The model factory (``"module:attr"``) and its keyword arguments."""

    SECTION = "model"
    factory: Str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@section
class EvaluationConfig(Section):
    """An optional evaluation function (``"module:attr"``) and its keyword arguments."""

    SECTION = "evaluation"
    function: Str | None = None
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
