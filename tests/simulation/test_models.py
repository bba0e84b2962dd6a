"""Model factories: shapes, Opacus validity and one DP-SGD step each."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from opacus import PrivacyEngine
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedsov.exceptions import ConfigError
from fedsov.simulation.models import logistic, mlp, small_cnn

CASES: list[tuple[str, Callable[[], nn.Module], int]] = [
    ("logistic", lambda: logistic(in_features=64, num_classes=10), 64),
    ("mlp", lambda: mlp(in_features=64, hidden=32, num_classes=10), 64),
    ("cnn28", lambda: small_cnn(image_size=28, channels=8), 784),
    ("cnn8", lambda: small_cnn(image_size=8, channels=4, num_classes=3), 64),
]


@pytest.mark.parametrize(("name", "factory", "features"), CASES, ids=[c[0] for c in CASES])
def test_output_shape_and_opacus_validity(
    name: str, factory: Callable[[], nn.Module], features: int
) -> None:
    model = factory()
    ModuleValidator.validate(model, strict=True)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    out = model(torch.rand(5, features))
    assert out.shape == (5, 3 if name == "cnn8" else 10)


def test_cnn_accepts_flat_and_image_input_identically() -> None:
    torch.manual_seed(0)
    model = small_cnn(in_channels=2, image_size=8, channels=4)
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    images = torch.rand(3, 2, 8, 8)
    assert torch.equal(model(images), model(images.reshape(3, -1)))


# Opacus' hooks make torch warn when the input itself does not require grad (normal in DP-SGD).
@pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")
@pytest.mark.parametrize(("name", "factory", "features"), CASES, ids=[c[0] for c in CASES])
def test_one_dp_sgd_step_updates_weights(
    name: str, factory: Callable[[], nn.Module], features: int
) -> None:
    torch.manual_seed(0)
    model = factory()
    before = [p.detach().clone() for p in model.parameters()]
    classes = 3 if name == "cnn8" else 10
    data = TensorDataset(torch.rand(8, features), torch.randint(0, classes, (8,)))
    engine = PrivacyEngine(accountant="rdp")
    dp_model, optimizer, loader = engine.make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(data, batch_size=4),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        poisson_sampling=False,
    )
    x, y = next(iter(loader))
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(dp_model(x), y)
    torch.autograd.backward(loss)
    optimizer.step()
    assert all(p.grad_sample is not None for p in dp_model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert engine.get_epsilon(delta=1e-5) > 0


def test_bad_model_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="hidden"):
        mlp(hidden=0)
    with pytest.raises(ConfigError, match="image_size"):
        small_cnn(image_size=2)
