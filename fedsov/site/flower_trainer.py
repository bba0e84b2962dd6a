"""A Flower app as a site's trainer: ``[trainer] kind = "flower"`` (docs/flower.md).

Each task becomes a Flower train ``Message``: the global model as an ``ArrayRecord``
(``"arrays"``) and the task's training plan plus ``server-round`` as a
``ConfigRecord`` (``"config"``; keys hyphenated as Flower's: ``learning-rate``,
``proximal-mu``, ...). The app runs in process with a ``Context`` that keeps its
``state`` across rounds. Its reply's arrays, minus the global model, are the update;
its metrics are data-derived and unnoised, so they are logged here and never sent.

fedsov cannot vouch for what the app does with its data, so by default
(``dp = "update"``) the site clips the whole update to L2 norm C and adds
N(0, (zC)²) to every coordinate: DP for the site's whole dataset (docs/privacy.md,
"Levels"). With ``dp = "sample"`` the app trains through
:func:`fedsov.site.flower_privacy.make_private`: fedsov's DP-SGD, one record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from opacus.optimizers.optimizer import _generate_noise
from torch import nn

from fedsov.config import PrivacyConfig, TrainerConfig, TrainingPlan
from fedsov.exceptions import ConfigError, TrainingError
from fedsov.messages import PrivacyLevel
from fedsov.privacy.accountant import MechanismStep, merge_history
from fedsov.privacy.evaluation import EvalOutcome, MetricValue
from fedsov.privacy.ledger import DATASET_UNIT
from fedsov.randomness import secret_seed
from fedsov.refs import resolve_ref
from fedsov.site.flower_privacy import PrivateRound, private_round
from fedsov.site.trainer import TrainResult, resolve_device, site_epsilon

__all__ = ["FlowerTrainer", "app_run_config", "load_client_app", "update_level_noise"]

_OPACUS_PREFIX = "_module."  # state_dict keys of a model still wrapped by Opacus


def app_run_config(folder: Path) -> dict[str, Any]:
    """The app's defaults, ``[tool.flwr.app.config]`` of its pyproject.toml (nested tables
    flattened with dots, as Flower does); {} without one."""
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        doc = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{pyproject}: cannot read the Flower app's config: {exc}") from exc
    table = doc.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})
    return _flattened(table)


def _flattened(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flattened(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_client_app(config: TrainerConfig, *, base: Path) -> tuple[Any, bool]:
    """The ``ClientApp`` ``config`` names, and whether it speaks Flower's legacy
    (``client_fn``) messages. Imported from ``app_dir`` (or ``base``) first, then sys.path."""
    from flwr.clientapp import ClientApp

    folder = str(config.app_dir or base)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if config.client_fn is not None:
        fn = resolve_ref(config.client_fn, what="trainer.client_fn")
        if not callable(fn):
            raise ConfigError(f"trainer.client_fn {config.client_fn!r} is not callable")
        try:
            return ClientApp(client_fn=fn), True
        except ValueError as exc:  # Flower checks the signature: client_fn(context)
            raise ConfigError(f"trainer.client_fn {config.client_fn!r}: {exc}") from exc
    assert config.app is not None  # TrainerConfig: exactly one of the two
    app = resolve_ref(config.app, what="trainer.app")
    if not isinstance(app, ClientApp):
        raise ConfigError(
            f"trainer.app {config.app!r} is a {type(app).__name__}, not a flwr ClientApp; "
            "a function returning a Client or NumPyClient goes in trainer.client_fn"
        )
    # A ClientApp(client_fn=...) answers legacy messages only (Flower keeps it in _call).
    return app, getattr(app, "_call", None) is not None


def update_level_noise(
    delta: Mapping[str, np.ndarray], *, clip: float, noise_multiplier: float, seed: int
) -> tuple[dict[str, np.ndarray], float]:
    """``delta`` clipped to L2 norm ``clip`` plus N(0, (noise_multiplier·clip)²) per
    coordinate (Opacus' floating-point-attack resistant draw from a generator seeded
    with ``seed``); and the norm before clipping."""
    norm = math.sqrt(sum(float(np.sum(np.square(v, dtype=np.float64))) for v in delta.values()))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    generator = torch.Generator().manual_seed(seed)
    std = noise_multiplier * clip
    noised = {}
    for name, value in delta.items():
        clipped = torch.from_numpy(np.asarray(value, dtype=np.float64) * scale)
        noise = _generate_noise(std, clipped, generator=generator, secure_mode=True)
        noised[name] = (clipped + noise).numpy()
    return noised, norm


def _plan_config(plan: TrainingPlan, server_round: int) -> dict[str, Any]:
    """The task's training plan as Flower config keys (``proximal_mu`` -> ``proximal-mu``)."""
    config: dict[str, Any] = {
        f.name.replace("_", "-"): getattr(plan, f.name) for f in dataclasses.fields(plan)
    }
    config["server-round"] = server_round
    return config


def _metadata(message_type: str, server_round: int, node_id: int) -> Any:
    from flwr.app import Metadata

    return Metadata(
        run_id=0,
        message_id=f"fedsov-round-{server_round}",
        src_node_id=0,
        dst_node_id=node_id,
        reply_to_message_id="",
        group_id=str(server_round),
        created_at=time.time(),
        ttl=43200.0,
        message_type=message_type,
    )


class FlowerTrainer:
    """Runs a Flower app round after round and accounts the privacy of all rounds."""

    def __init__(
        self,
        *,
        config: TrainerConfig,
        train: TrainingPlan,
        privacy: PrivacyConfig,
        node_name: str,
        base: Path,
        seed: int = 0,
        prior: Sequence[MechanismStep] = (),
        num_examples: int | None = None,
        device: str | None = None,
    ) -> None:
        """``num_examples``: the site's example count when fedsov loaded its data (else the
        app's first count is kept: under DP it is public and must not follow the data)."""
        from flwr.app import Context, RecordDict

        self.config = config
        self.train = train
        self.privacy = privacy
        self.seed = seed
        self.device = resolve_device(device)
        self.app, self.legacy = load_client_app(config, base=base)
        node_id = int.from_bytes(hashlib.sha256(node_name.encode()).digest()[:8], "big") >> 1
        self.context = Context(
            run_id=0,
            node_id=node_id,
            node_config=dict(config.node_config),
            state=RecordDict(),
            run_config={**app_run_config(config.app_dir or base), **config.run_config},
        )
        self._num_examples = num_examples
        self._history: list[MechanismStep] = merge_history(prior)
        self._total_steps = sum(s.steps for s in self._history)

    @property
    def level(self) -> PrivacyLevel:
        if not self.privacy.enabled:
            return PrivacyLevel.NONE
        return PrivacyLevel.SAMPLE if self.config.dp == "sample" else PrivacyLevel.UPDATE

    def planned_step(self) -> MechanismStep:
        """The next round's release: one Gaussian release of the whole update; with
        sample-level DP the app's steps are known only after it trains (checked then)."""
        if self.level is PrivacyLevel.SAMPLE:
            return MechanismStep(float(self.privacy.noise_multiplier), 1.0, 0)
        return MechanismStep(float(self.config.update_noise_multiplier), 1.0, 1)

    def epsilon_after(self, extra: Sequence[MechanismStep]) -> float:
        return site_epsilon(self.privacy, [*self._history, *extra])

    def train_round(self, model: nn.Module, *, round_seed: int, server_round: int) -> TrainResult:
        """Run the app on ``model``'s weights (the global model); a TrainingError with the
        app's own text if it fails, replies with an error or with arrays that do not fit."""
        started = time.perf_counter()
        base = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
        params = [name for name, _ in model.named_parameters()]
        seeds = [secret_seed([self.seed, round_seed, i]) for i in range(3)]
        round = PrivateRound(self.privacy, sampler_seed=seeds[0], noise_seed=seeds[1])
        with private_round(self.context, round):
            reply = self._call(base, server_round)
        trained, num_examples, metrics = self._read_reply(reply, list(base))
        _check_fits(trained, base)
        delta = {k: trained[k].astype(np.float64) - base[k] for k in params}
        level, step, norm = self.level, None, math.nan
        if level is PrivacyLevel.UPDATE:
            z, clip = float(self.config.update_noise_multiplier), float(self.config.update_clip)
            delta, norm = update_level_noise(delta, clip=clip, noise_multiplier=z, seed=seeds[2])
            step = MechanismStep(z, 1.0, 1)
        elif level is PrivacyLevel.SAMPLE:
            spent = round.steps()
            if round.engine is None:
                raise TrainingError(
                    "[trainer] dp = 'sample', but the app did not call "
                    "fedsov.site.flower_privacy.make_private this round: nothing was sent"
                )
            step = _one_step(spent)
            num_examples = round.dataset_size  # replace-one: the N that fixes q
        self._account(step)
        weights = dict(base)
        for k in params:
            weights[k] = (base[k] + delta[k]).astype(base[k].dtype)
        return TrainResult(
            weights=weights,
            num_examples=self._published_count(num_examples),
            steps=step.steps if step else 0,
            total_steps=self._total_steps,
            sample_rate=step.sample_rate if step else 0.0,
            epsilon=self.epsilon_after([]),
            delta=float(self.privacy.delta),
            noise_multiplier=step.noise_multiplier if step else 0.0,
            max_grad_norm=self._clip(level),
            train_loss=float(metrics.get("train_loss", metrics.get("loss", math.nan))),
            seconds=time.perf_counter() - started,
            level=level,
            metrics={**metrics, **({"update_norm": norm} if not math.isnan(norm) else {})},
        )

    def _clip(self, level: PrivacyLevel) -> float:
        if level is PrivacyLevel.UPDATE:
            return float(self.config.update_clip)
        return float(self.privacy.max_grad_norm) if level is PrivacyLevel.SAMPLE else 0.0

    def _account(self, step: MechanismStep | None) -> None:
        if step is not None:
            self._history = merge_history([*self._history, step])
            self._total_steps += step.steps

    def _published_count(self, reported: int) -> int:
        """The example count the update carries: the site's, or the app's first (fixed)."""
        if self._num_examples is None:
            self._num_examples = reported
        return self._num_examples

    def evaluate_global(self, model: nn.Module, *, server_round: int) -> EvalOutcome:
        """The app's evaluate handler (a legacy client's ``evaluate``) on the model
        received; the metrics ``eval_metrics`` names, clipped, released per dataset."""
        if not self.config.eval_metrics:
            raise TrainingError("[trainer] eval_metrics names no metric of the app to release")
        base = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        reply = self._call(base, server_round, message_type="evaluate")
        count, metrics = self._read_evaluation(reply)
        missing = sorted(set(self.config.eval_metrics) - set(metrics))
        if missing:
            raise TrainingError(
                f"the Flower app's evaluation has no {', '.join(missing)} "
                f"(it reported {', '.join(sorted(metrics)) or 'no metrics'})"
            )
        if not all(math.isfinite(metrics[k]) for k in self.config.eval_metrics):
            raise TrainingError("the Flower app's evaluation reported NaN or Inf")
        values = tuple(
            MetricValue(name, metrics[name], float(low), float(high))
            for name, (low, high) in self.config.eval_metrics.items()
        )
        # per dataset: the site weighs the scores by its update's public example count
        return EvalOutcome(values, examples=count, unit=DATASET_UNIT)

    def eval_step(self) -> MechanismStep:
        """The federated evaluation's release: one Gaussian mechanism (σ = z, q = 1)."""
        return MechanismStep(self.config.eval_noise, 1.0, 1)

    def add_release(self, step: MechanismStep) -> None:
        """Count ``step``, released by the site beside training, in this trainer's ε."""
        if self.privacy.enabled:
            self._history = merge_history([*self._history, step])

    def _read_evaluation(self, reply: Any) -> tuple[int, dict[str, float]]:
        """(the app's example count, its scalar metrics) from an evaluate reply."""
        content = _reply_content(reply)
        if self.legacy:
            try:
                count = content.metric_records["evaluateres.num_examples"]["num_examples"]
                loss = content.metric_records["evaluateres.loss"]["loss"]
                metrics = _scalars(content.config_records["evaluateres.metrics"].items())
            except KeyError as exc:
                raise TrainingError(f"the Flower client's evaluate result has no {exc}") from exc
            return _count(count), {"loss": float(loss), **metrics}
        metrics = _scalars(m for record in content.metric_records.values() for m in record.items())
        if "num-examples" not in metrics:
            raise TrainingError("the Flower app's evaluation has no 'num-examples'")
        return _count(metrics.pop("num-examples")), metrics

    def _call(
        self, base: Mapping[str, np.ndarray], server_round: int, message_type: str = "train"
    ) -> Any:
        from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

        config = _plan_config(self.train, server_round)
        if self.legacy:
            from flwr.compat.common.parameter import ndarrays_to_parameters
            from flwr.compat.common.recorddict_compat import (
                evaluateins_to_recorddict,
                fitins_to_recorddict,
            )
            from flwr.compat.common.typing import EvaluateIns, FitIns

            parameters = ndarrays_to_parameters(list(base.values()))
            if message_type == "evaluate":
                ins = EvaluateIns(parameters, config)
                content = evaluateins_to_recorddict(ins, keep_input=True)
            else:
                content = fitins_to_recorddict(FitIns(parameters, config), keep_input=True)
        else:
            arrays = ArrayRecord({k: Array(v) for k, v in base.items()})
            content = RecordDict({"arrays": arrays, "config": ConfigRecord(config)})
        metadata = _metadata(message_type, server_round, self.context.node_id)
        try:
            # Flower's own serde builds a message with given metadata this way.
            message = Message(content=content, metadata=metadata)  # type: ignore[call-overload]
            return self.app(message, self.context)
        except TrainingError:
            raise
        except Exception as exc:
            raise TrainingError(f"the Flower app failed: {type(exc).__name__}: {exc}") from exc

    def _read_reply(
        self, reply: Any, names: list[str]
    ) -> tuple[dict[str, np.ndarray], int, dict[str, float]]:
        """(trained arrays by name, the app's example count, its scalar metrics)."""
        content = _reply_content(reply)
        if self.legacy:
            return _read_legacy(content, names)
        arrays = list(content.array_records.values())
        if len(arrays) != 1:
            raise TrainingError(
                f"the Flower app's reply holds {len(arrays)} ArrayRecords; it must hold one "
                "(the trained model, e.g. 'arrays')"
            )
        trained = {_unwrapped(k): v.numpy() for k, v in arrays[0].items()}
        metrics = _scalars(m for record in content.metric_records.values() for m in record.items())
        if "num-examples" not in metrics:
            raise TrainingError("the Flower app's reply has no 'num-examples' in a MetricRecord")
        return trained, _count(metrics.pop("num-examples")), metrics


def _reply_content(reply: Any) -> Any:
    """The RecordDict of the app's reply; a TrainingError if it is no Message or an Error."""
    from flwr.app import Message

    if not isinstance(reply, Message):
        raise TrainingError(f"the Flower app returned {type(reply).__name__}, not a Message")
    if reply.has_error():
        error = reply.error
        raise TrainingError(f"the Flower app replied with error {error.code}: {error.reason}")
    return reply.content


def _read_legacy(
    content: Any, names: list[str]
) -> tuple[dict[str, np.ndarray], int, dict[str, float]]:
    """A legacy FitRes: parameters in the order they were sent."""
    try:
        arrays = content.array_records["fitres.parameters"].to_numpy_ndarrays()
        count = content.metric_records["fitres.num_examples"]["num_examples"]
        status = content.config_records["fitres.status"]
        metrics = _scalars(content.config_records["fitres.metrics"].items())
    except KeyError as exc:
        raise TrainingError(f"the Flower client's fit result has no {exc}") from exc
    if status.get("code", 0) != 0:
        raise TrainingError(f"the Flower client's fit failed: {status.get('message', '')}")
    if len(arrays) != len(names):
        raise TrainingError(
            f"the Flower client returned {len(arrays)} arrays; the model has {len(names)}"
        )
    return dict(zip(names, arrays, strict=True)), _count(count), metrics


def _unwrapped(name: str) -> str:
    return name.removeprefix(_OPACUS_PREFIX)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TrainingError(f"the Flower app reported {value!r} examples; expected a count >= 0")
    return int(value)


def _scalars(items: Any) -> dict[str, float]:
    """The app's numeric metrics (lists and strings are left out)."""
    return {
        str(k): float(v) for k, v in items if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _check_fits(trained: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> None:
    """A TrainingError unless ``trained`` has the global model's names, shapes, finite values."""
    missing = [k for k in base if k not in trained]
    extra = [k for k in trained if k not in base]
    if missing or extra:
        raise TrainingError(
            f"the Flower app's arrays do not match the federation's model: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for name, value in base.items():
        got = trained[name]
        if got.shape != value.shape:
            raise TrainingError(
                f"the Flower app returned {name} of shape {got.shape}, the model has {value.shape}"
            )
        if got.dtype.kind == "f" and not np.isfinite(got).all():
            raise TrainingError(f"local training diverged: {name} holds NaN or Inf")


def _one_step(spent: list[MechanismStep]) -> MechanismStep:
    """The round's DP-SGD steps as one entry (make_private is called once: one σ, one q)."""
    if not spent:
        return MechanismStep(0.0, 1.0, 0)
    merged = merge_history(spent)
    if len(merged) != 1:
        raise TrainingError(f"the app's DP-SGD took steps of {len(merged)} kinds: {merged}")
    return merged[0]
