"""``[trainer]``: what trains at a site: fedsov's DP-SGD, or a Flower app (docs/flower.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Annotated

from pydantic import Field

from fedsov.config.base import ConfigPath, KeyProblem, Number, Section, Str, one_of, section

__all__ = ["TRAINER_KINDS", "TrainerConfig", "UserConfig"]

TRAINER_KINDS = ("dp-sgd", "flower")

UserConfig = dict[str, bool | int | float | str]
"""Flower's ``node_config`` / ``run_config``: flat keys and scalar values."""


@section
class TrainerConfig(Section):
    """``kind = "dp-sgd"`` (default) or ``"flower"`` with exactly one of ``app`` (a
    ``ClientApp``) or ``client_fn`` (returns a ``Client`` / ``NumPyClient``).

    A Flower app's DP is ``dp = "update"`` (the site clips its whole update to
    ``update_clip`` and adds N(0, (update_noise_multiplier·update_clip)²) to every
    coordinate) or ``dp = "sample"`` (the app trains through
    ``fedsov.site.flower_privacy.make_private`` with the ``[privacy]`` settings).
    """

    SECTION = "trainer"
    kind: Annotated[Str, one_of(*TRAINER_KINDS)] = "dp-sgd"
    app: Str | None = None
    client_fn: Str | None = None
    app_dir: ConfigPath | None = None  # put first on sys.path to import the app
    node_config: UserConfig = dataclasses.field(default_factory=dict)
    run_config: UserConfig = dataclasses.field(default_factory=dict)
    dp: Annotated[Str, one_of("update", "sample")] = "update"
    update_clip: Annotated[Number, Field(gt=0.0)] = 1.0
    update_noise_multiplier: Annotated[Number, Field(ge=0.0)] = 1.0
    # Federated evaluation ([training] evaluate): the app's metrics to release, each
    # clipped to [low, high] (its evaluate handler's MetricRecord keys, or a legacy
    # client's "loss" and metrics), with dataset-level DP of noise multiplier
    # eval_noise_multiplier (default: update_noise_multiplier).
    eval_metrics: dict[Str, list[Number]] = dataclasses.field(default_factory=dict)
    eval_noise_multiplier: Annotated[Number, Field(gt=0.0)] | None = None

    def __post_init__(self) -> None:
        for name, bounds in self.eval_metrics.items():
            if "/" in name or len(bounds) != 2 or not bounds[0] < bounds[1]:
                raise KeyProblem(
                    f"eval_metrics.{name}",
                    "must be [low, high] with low < high, a name without '/'",
                )
        flower_keys = [k for k in ("app", "client_fn") if getattr(self, k) is not None]
        if self.kind == "dp-sgd" and flower_keys:
            raise KeyProblem(flower_keys[0], "is for kind = 'flower'")
        if self.kind == "flower" and len(flower_keys) != 1:
            raise KeyProblem(
                "app",
                "kind = 'flower' needs exactly one of 'app' (\"module:attr\", a ClientApp) "
                "or 'client_fn' (\"module:attr\", returns a Client or NumPyClient)",
            )

    @property
    def flower(self) -> bool:
        return self.kind == "flower"

    @property
    def eval_noise(self) -> float:
        """σ of the app's federated evaluation release."""
        z = self.eval_noise_multiplier
        return float(self.update_noise_multiplier if z is None else z)

    def fingerprint(self) -> str:
        """What a site's privacy ledger keys releases by when fedsov does not load the
        data itself: the app and the node_config that picks its data."""
        ident = json.dumps([self.app or self.client_fn, self.node_config], sort_keys=True)
        return "flower:" + hashlib.sha256(ident.encode()).hexdigest()
