"""compute_epsilon against Google's dp-accounting and known values."""

from __future__ import annotations

import math

import pytest
from dp_accounting import dp_event, pld, rdp

from fedsov.exceptions import ConfigError
from fedsov.privacy.accountant import ACCOUNTANTS, MechanismStep, compute_epsilon

Q, SIGMA, T, DELTA = 0.01, 1.0, 1000, 1e-5
HISTORY = [MechanismStep(noise_multiplier=SIGMA, sample_rate=Q, steps=T)]


def _event() -> dp_event.DpEvent:
    return dp_event.PoissonSampledDpEvent(Q, dp_event.GaussianDpEvent(SIGMA))


def test_rdp_matches_dp_accounting() -> None:
    reference = rdp.RdpAccountant().compose(_event(), T).get_epsilon(DELTA)
    assert reference == pytest.approx(2.1014, abs=1e-4)
    eps = compute_epsilon(history=HISTORY, delta=DELTA, accountant="rdp")
    assert eps == pytest.approx(reference, rel=1e-3)


def test_prv_close_to_pld() -> None:
    accountant = pld.PLDAccountant(value_discretization_interval=1e-4)
    reference = accountant.compose(_event(), T).get_epsilon(DELTA)
    assert reference == pytest.approx(1.8282, abs=1e-3)
    assert compute_epsilon(history=HISTORY, delta=DELTA) == pytest.approx(reference, rel=0.01)


def test_history_splits_compose() -> None:
    split = [MechanismStep(noise_multiplier=SIGMA, sample_rate=Q, steps=T // 2)] * 2
    for accountant in ("prv", "rdp"):
        whole = compute_epsilon(history=HISTORY, delta=DELTA, accountant=accountant)
        assert compute_epsilon(history=split, delta=DELTA, accountant=accountant) == whole


def test_edge_histories() -> None:
    assert compute_epsilon(history=[], delta=DELTA) == 0.0
    zero = [MechanismStep(noise_multiplier=SIGMA, sample_rate=Q, steps=0)]
    assert compute_epsilon(history=zero, delta=DELTA) == 0.0
    no_noise = [MechanismStep(noise_multiplier=0.0, sample_rate=Q, steps=1)]
    assert compute_epsilon(history=no_noise, delta=DELTA) == math.inf
    full_batch = [MechanismStep(noise_multiplier=SIGMA, sample_rate=1.0, steps=10)]
    assert math.isfinite(compute_epsilon(history=full_batch, delta=DELTA))
    assert compute_epsilon(history=HISTORY, delta=DELTA, accountant="gdp") > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"accountant": "moments"}, "accountant"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"delta": float("nan")}, "delta"),
        ({"history": [(1.0, 0.01, 10)]}, "MechanismStep"),
    ],
)
def test_bad_inputs(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"history": HISTORY, "delta": DELTA, **kwargs}
    with pytest.raises(ConfigError, match=match):
        compute_epsilon(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sigma", "q", "steps", "match"),
    [
        (-1.0, 0.1, 1, "noise_multiplier"),
        (math.inf, 0.1, 1, "noise_multiplier"),
        (1.0, 0.0, 1, "sample_rate"),
        (1.0, 1.5, 1, "sample_rate"),
        (1.0, 0.1, -1, "steps"),
        (1.0, 0.1, 1.5, "steps"),
    ],
)
def test_bad_steps(sigma: float, q: float, steps: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MechanismStep(noise_multiplier=sigma, sample_rate=q, steps=steps)


def test_gdp_needs_constant_parameters() -> None:
    mixed = [*HISTORY, MechanismStep(noise_multiplier=2.0, sample_rate=Q, steps=10)]
    with pytest.raises(ConfigError, match="gdp"):
        compute_epsilon(history=mixed, delta=DELTA, accountant="gdp")
    assert set(ACCOUNTANTS) == {"prv", "rdp", "gdp", "rdp-classic"}
