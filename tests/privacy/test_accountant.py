"""compute_epsilon against Google's dp-accounting and known values."""

from __future__ import annotations

import math

import pytest
from dp_accounting import dp_event, pld, rdp
from dp_accounting.privacy_accountant import NeighboringRelation

from fedsov.exceptions import ConfigError
from fedsov.privacy.accountant import (
    ACCOUNTANTS,
    NEIGHBOURS,
    MechanismStep,
    check_site_accountant,
    compute_epsilon,
)

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
    eps = compute_epsilon(history=HISTORY, delta=DELTA, accountant="prv")
    assert eps == pytest.approx(reference, rel=0.01)


def _replace_one(history: list[tuple[float, float, int]]) -> float:
    """dp-accounting's own PLD, replace-one, at its finer default-like discretisation."""
    accountant = pld.PLDAccountant(
        NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4
    )
    for sigma, q, steps in history:
        accountant.compose(
            dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps
        )
    return float(accountant.get_epsilon(DELTA))


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # the quickstart before this accounting: σ 2, q 0.2 (64 of 287), 40 rounds x 5 steps
        ([(2.0, 0.2, 200)], 15.16),
        # the quickstart now: σ 3, 30 rounds x 5 steps
        ([(3.0, 0.2, 150)], 7.74),
        ([(1.0, 0.01, 1000)], 2.84),
        ([(1.1, 256 / 60000, 14062)], None),
        ([(2.0, 0.2, 100), (3.0, 0.1, 50)], None),  # the batch size changed mid-way
    ],
)
def test_site_epsilon_is_dp_accounting_replace_one(
    history: list[tuple[float, float, int]], expected: float | None
) -> None:
    reference = _replace_one(history)
    if expected is not None:
        assert reference == pytest.approx(expected, abs=0.01)
    steps = [MechanismStep(s, q, t) for s, q, t in history]
    ours = compute_epsilon(history=steps, delta=DELTA)  # the default: what sites report
    # Coarser pessimistic discretisation: never below the reference, within 0.5%.
    assert reference * (1 - 1e-9) <= ours <= reference * (1 + 5e-3)
    assert NEIGHBOURS["pld"] == "replace-one"


def test_replace_one_costs_more_than_add_remove() -> None:
    assert compute_epsilon(history=HISTORY, delta=DELTA) > compute_epsilon(
        history=HISTORY, delta=DELTA, accountant="prv"
    )


def test_history_splits_compose() -> None:
    """Two halves of the history against dp-accounting composing the two halves."""
    half = [(SIGMA, Q, T // 2)] * 2
    split = [MechanismStep(noise_multiplier=s, sample_rate=q, steps=t) for s, q, t in half]
    reference = _replace_one(half)
    assert (
        reference * (1 - 1e-9)
        <= compute_epsilon(history=split, delta=DELTA)
        <= (reference * (1 + 5e-3))
    )
    add_remove = rdp.RdpAccountant()
    for _ in half:
        add_remove.compose(_event(), T // 2)
    eps = compute_epsilon(history=split, delta=DELTA, accountant="rdp")
    assert eps == pytest.approx(add_remove.get_epsilon(DELTA), rel=1e-3)


def test_edge_histories() -> None:
    assert compute_epsilon(history=[], delta=DELTA) == 0.0
    zero = [MechanismStep(noise_multiplier=SIGMA, sample_rate=Q, steps=0)]
    assert compute_epsilon(history=zero, delta=DELTA) == 0.0
    no_noise = [MechanismStep(noise_multiplier=0.0, sample_rate=Q, steps=1)]
    assert compute_epsilon(history=no_noise, delta=DELTA) == math.inf
    full_batch = [MechanismStep(noise_multiplier=SIGMA, sample_rate=1.0, steps=10)]
    for accountant in ACCOUNTANTS:
        assert math.isfinite(
            compute_epsilon(history=full_batch, delta=DELTA, accountant=accountant)
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"accountant": "moments"}, "accountant"),
        ({"accountant": "gdp"}, "accountant"),
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


def test_sites_account_replace_one_only() -> None:
    assert set(ACCOUNTANTS) == {"pld", "prv", "rdp", "rdp-classic"}
    assert check_site_accountant("pld") == "pld"
    with pytest.raises(ConfigError, match="not an upper bound"):
        check_site_accountant("gdp")
    for add_remove in ("prv", "rdp", "rdp-classic"):
        with pytest.raises(ConfigError, match="replace-one accounting is honest"):
            check_site_accountant(add_remove)
