"""A Flower ClientApp as a site's trainer, in process: messages, deltas, errors and DP."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import flower_tiny_apps as apps
import numpy as np
import pytest
import torch

from fedsov.codec import Manifest
from fedsov.config import PrivacyConfig, TrainerConfig, TrainingPlan
from fedsov.exceptions import ConfigError, FedsovError, TrainingError
from fedsov.messages import (
    PrivacyLevel,
    PrivacyReport,
    UpdateHeader,
    header_from_json,
    header_to_json,
)
from fedsov.privacy.accountant import MechanismStep, compute_epsilon
from fedsov.simulation.models import mlp
from fedsov.site.flower_privacy import make_private
from fedsov.site.flower_trainer import FlowerTrainer, update_level_noise
from fedsov.transport.serde import update_header_from_proto, update_header_to_proto

HERE = Path(__file__).parent
NO_DP = PrivacyConfig(enabled=False)
PLAN = TrainingPlan(local_epochs=2, batch_size=16, learning_rate=0.1, momentum=0.5)


def _trainer(app: str, privacy: PrivacyConfig = NO_DP, **trainer: Any) -> FlowerTrainer:
    key = "client_fn" if app == "client_fn" else "app"
    config = TrainerConfig(kind="flower", **{key: f"flower_tiny_apps:{app}"}, **trainer)
    return FlowerTrainer(
        config=config, train=PLAN, privacy=privacy, node_name="site-1", base=HERE, seed=3
    )


def _model(**kwargs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return mlp(**{"in_features": 4, "hidden": 3, "num_classes": 2, **kwargs})


def _global(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_the_app_gets_the_global_model_the_plan_and_its_node_config_and_keeps_state() -> None:
    apps.SEEN.clear()
    trainer = _trainer("shift", node_config={"partition-id": 1, "num-partitions": 2})
    model = _model()
    base = _global(model)
    first = trainer.train_round(model, round_seed=1, server_round=4)
    trainer.train_round(_model(), round_seed=2, server_round=5)
    (config, node_config, state), (config2, _, state2) = apps.SEEN
    assert config == {
        "local-epochs": 2,
        "batch-size": 16,
        "learning-rate": 0.1,
        "momentum": 0.5,
        "proximal-mu": 0.0,  # Flower's FedProx key
        "evaluate": False,
        "evaluate-every": 1,
        "server-round": 4,
    }
    assert config2["server-round"] == 5
    assert node_config == {"partition-id": 1, "num-partitions": 2}
    assert (state, state2) == ({"n": 1}, {"n": 2})  # the Context persists across rounds
    for name, value in first.weights.items():
        np.testing.assert_allclose(value, base[name] + apps.STEP, rtol=1e-6)
    assert first.level is PrivacyLevel.NONE and first.num_examples == 40
    assert first.train_loss == 0.25  # metrics stay in the result (logged), never in a header


def test_a_legacy_numpy_client_from_client_fn_trains_too() -> None:
    apps.SEEN.clear()
    result = _trainer("client_fn").train_round(_model(), round_seed=1, server_round=1)
    assert apps.SEEN[0][0]["server-round"] == 1
    assert result.num_examples == 30 and result.metrics == {"loss": 0.5}


@pytest.mark.parametrize(
    ("app", "match"),
    [
        ("failing", "the Flower app failed: RuntimeError: the hospital's disk is full"),
        ("erring", "replied with error 7: no data today"),
        ("misshapen", r"of shape \(3,\), the model has"),
    ],
)
def test_an_app_that_fails_raises_a_training_error_with_its_text(app: str, match: str) -> None:
    with pytest.raises(TrainingError, match=match):
        _trainer(app).train_round(_model(), round_seed=1, server_round=1)


@pytest.mark.parametrize(
    ("trainer", "match"),
    [
        ({"app": "no_such_module_here:app"}, "cannot import module 'no_such_module_here'"),
        ({"app": "flower_tiny_apps:nothing"}, "has no attribute 'nothing'"),
        ({"app": "flower_tiny_apps:not_an_app"}, "is a int, not a flwr ClientApp"),
        ({"client_fn": "flower_tiny_apps:not_an_app"}, "is not callable"),
    ],
)
def test_an_app_reference_that_does_not_name_an_app_is_a_config_error(
    trainer: dict[str, str], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        FlowerTrainer(
            config=TrainerConfig(kind="flower", **trainer),
            train=PLAN,
            privacy=NO_DP,
            node_name="s",
            base=HERE,
        )


def test_trainer_config_wants_exactly_one_app_for_a_flower_site() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.app: kind = 'flower' needs exactly one"):
        TrainerConfig(kind="flower")
    with pytest.raises(ConfigError, match=r"trainer\.app: is for kind = 'flower'"):
        TrainerConfig(app="a:b")


def test_update_level_dp_clips_the_whole_delta_and_noises_it_and_accounts_one_release() -> None:
    privacy = PrivacyConfig(delta=1e-5)
    trainer = _trainer("shift", privacy, update_clip=0.1, update_noise_multiplier=2.0)
    model = _model(in_features=64, hidden=32, num_classes=10)  # 2,410 coordinates
    base = _global(model)
    result = trainer.train_round(model, round_seed=1, server_round=1)
    delta = np.concatenate([(result.weights[k] - base[k]).ravel() for k in base])
    params = sum(v.size for v in base.values())
    # the clipped delta has norm 0.1; noise of std 0.2 per coordinate dominates it
    assert np.std(delta) == pytest.approx(0.2, rel=0.1)  # its sd is 0.3% of 0.2
    assert result.level is PrivacyLevel.UPDATE and result.metrics["update_norm"] == pytest.approx(
        apps.STEP * math.sqrt(params), rel=1e-5
    )
    assert (result.noise_multiplier, result.sample_rate, result.steps) == (2.0, 1.0, 1)
    assert result.max_grad_norm == 0.1
    assert result.epsilon == pytest.approx(
        compute_epsilon(history=[MechanismStep(2.0, 1.0, 1)], delta=1e-5)
    )
    assert trainer.planned_step() == MechanismStep(2.0, 1.0, 1)


def test_update_level_noise_without_noise_is_the_clipped_delta() -> None:
    delta = {"a": np.full(4, 3.0), "b": np.full(5, 4.0)}  # norm sqrt(36 + 80)
    out, norm = update_level_noise(delta, clip=1.0, noise_multiplier=0.0, seed=1)
    assert norm == pytest.approx(math.sqrt(116))
    total = math.sqrt(sum(float(np.sum(v**2)) for v in out.values()))
    assert total == pytest.approx(1.0)
    np.testing.assert_allclose(out["a"] / out["b"][:4], 0.75)


def test_replace_one_accounting_of_one_release_is_the_gaussian_with_twice_the_sensitivity() -> None:
    """The ledger's step (z, q=1, 1) under replace-one is a Gaussian of std z·C whose
    neighbours (any two clipped updates) differ by 2C: the analytic Gaussian mechanism
    (Balle & Wang 2018) with sensitivity / std = 2 / z gives that ε's δ."""
    from scipy.stats import norm

    z = 2.0
    eps = compute_epsilon(history=[MechanismStep(z, 1.0, 1)], delta=1e-5)
    ratio = 2.0 / z
    delta = norm.cdf(ratio / 2 - eps / ratio) - math.exp(eps) * norm.cdf(-ratio / 2 - eps / ratio)
    assert delta == pytest.approx(1e-5, rel=0.05)


def test_make_private_trains_with_fedsov_dp_sgd_and_the_site_reports_sample_level() -> None:
    privacy = PrivacyConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    trainer = _trainer("private", privacy, dp="sample")
    result = trainer.train_round(_model(), round_seed=1, server_round=1)
    assert result.level is PrivacyLevel.SAMPLE
    assert (result.noise_multiplier, result.sample_rate, result.steps) == (1.0, 0.25, 4)
    assert result.num_examples == 64  # the N of the loader it made private, not the app's 999
    assert result.epsilon == pytest.approx(
        compute_epsilon(history=[MechanismStep(1.0, 0.25, 4)], delta=1e-5)
    )


def test_a_sample_level_round_in_which_the_app_did_not_call_make_private_is_refused() -> None:
    trainer = _trainer("forgetful", PrivacyConfig(), dp="sample")
    with pytest.raises(
        TrainingError, match=r"did not call fedsov\.site\.flower_privacy\.make_private"
    ):
        trainer.train_round(_model(), round_seed=1, server_round=1)
    assert trainer.epsilon_after([]) == 0.0  # nothing was released


def test_make_private_outside_a_site_round_says_how_to_use_it() -> None:
    model = _model()
    with pytest.raises(FedsovError, match="in a fedsov site's round only"):
        make_private(object(), model, torch.optim.SGD(model.parameters(), lr=0.1), apps._loader())


def test_the_privacy_level_is_on_the_wire_and_in_header_json() -> None:
    derived = PrivacyReport(enabled=True, epsilon=1.0, delta=1e-5)
    assert derived.level is None and derived.sample_level
    update = PrivacyReport(enabled=True, epsilon=1.0, delta=1e-5, level=PrivacyLevel.UPDATE)
    assert not update.sample_level
    assert not PrivacyReport(enabled=False, epsilon=0.0, delta=0.0).sample_level
    header = UpdateHeader("t", 1, Manifest(()), 10, 0, "0" * 64, "0" * 64, update)
    assert header_from_json(header_to_json(header)).privacy.level is PrivacyLevel.UPDATE
    wire = update_header_from_proto(update_header_to_proto(header))
    assert wire.privacy == update
    old = update_header_to_proto(replace(header, privacy=derived))
    assert update_header_from_proto(old).privacy.level is None  # "" on the wire: derived


SITE_TOML = """
[site]
name = "site-1"

[upstream]
address = "127.0.0.1:1"
insecure = true

[model]
factory = "fedsov.simulation.models:mlp"
kwargs = {{ in_features = 4, hidden = 3, num_classes = 2 }}

[privacy]
delta = 1e-5
{tables}
"""


def _trainer_table(**keys: str) -> str:
    return '[trainer]\nkind = "flower"\n' + "".join(f"{k} = {v}\n" for k, v in keys.items())


def test_a_flower_site_needs_no_data_table_and_its_ledger_follows_the_app(tmp_path: Path) -> None:
    from fedsov.site.agent import SiteAgent
    from fedsov.site.config import load

    path = tmp_path / "site.toml"
    table = _trainer_table(
        app='"flower_tiny_apps:shift"', app_dir=f'"{HERE}"', node_config="{ partition-id = 1 }"
    )
    path.write_text(SITE_TOML.format(tables=table))
    config = load(path)
    assert config.data is None and config.trainer.node_config == {"partition-id": 1}
    agent = SiteAgent(config)
    assert agent.dataset_id == config.trainer.fingerprint()
    assert agent.dataset_id != replace(config.trainer, node_config={}).fingerprint()


def test_a_site_without_data_or_with_a_bad_app_reference_stops_at_start_up(tmp_path: Path) -> None:
    from fedsov.site.agent import SiteAgent
    from fedsov.site.config import load

    path = tmp_path / "site.toml"
    path.write_text(SITE_TOML.format(tables=""))
    with pytest.raises(ConfigError, match=r"a \[data\] table is required unless"):
        load(path)
    path.write_text(SITE_TOML.format(tables=_trainer_table(app='"flower_tiny_apps:not_an_app"')))
    with pytest.raises(ConfigError, match="is a int, not a flwr ClientApp"):
        SiteAgent(load(path))  # the config's folder is searched, then sys.path


EVAL = {"eval_acc": [0.0, 1.0], "weight_sum": [-100.0, 100.0]}


def test_the_apps_evaluate_handler_scores_the_received_model_per_dataset() -> None:
    trainer = _trainer("shift", eval_metrics=EVAL)
    model = _model()
    before = _global(model)
    outcome = trainer.evaluate_global(model, server_round=3)
    assert outcome.unit == "dataset" and outcome.examples == 25
    acc, weights = outcome.metrics
    assert (acc.name, acc.mean, acc.normalized(25, per_record=False)) == ("eval_acc", 1.5, 1.0)
    expected = sum(float(v.sum()) for v in before.values())
    assert weights.mean == pytest.approx(expected)  # the global weights, as received
    assert all(np.array_equal(v, before[k]) for k, v in _global(model).items())
    assert trainer.eval_step() == MechanismStep(1.0, 1.0, 1)  # update_noise_multiplier
    assert _trainer("shift", eval_noise_multiplier=0.2).eval_step().noise_multiplier == 0.2


def test_a_legacy_clients_evaluate_gives_its_loss_and_metrics() -> None:
    trainer = _trainer("client_fn", eval_metrics={"loss": [0.0, 1.0], "accuracy": [0.0, 1.0]})
    outcome = trainer.evaluate_global(_model(), server_round=1)
    assert outcome.examples == 12
    assert {m.name: m.mean for m in outcome.metrics} == {"loss": 0.75, "accuracy": 0.25}


@pytest.mark.parametrize(
    ("app", "metrics", "error"),
    [
        ("shift", {}, "eval_metrics names no metric"),
        ("shift", {"eval_auc": [0.0, 1.0]}, "has no eval_auc"),
        ("failing", EVAL, "the Flower app failed"),  # no evaluate handler
    ],
)
def test_an_evaluation_that_cannot_be_released_says_why(
    app: str, metrics: dict[str, list[float]], error: str
) -> None:
    with pytest.raises(TrainingError, match=error):
        _trainer(app, eval_metrics=metrics).evaluate_global(_model(), server_round=1)


def test_eval_metrics_need_a_range() -> None:
    with pytest.raises(ConfigError, match=r"eval_metrics\.acc: must be \[low, high\]"):
        TrainerConfig(kind="flower", app="a:b", eval_metrics={"acc": [1.0]})
