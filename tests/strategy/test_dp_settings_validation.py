"""SiteDPSettings: every wrong value is refused with a message naming the setting."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from fedsov.exceptions import ConfigError
from fedsov.strategy import SiteDPSettings
from fedsov.strategy.dp_fedavg import adaptive_noise


def make(**overrides: Any) -> SiteDPSettings:
    values: dict[str, Any] = {"clip": 1.0, "noise_multiplier": 1.0, **overrides}
    return SiteDPSettings(**values)


def refused(message: str, **overrides: Any) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        make(**overrides)


def test_defaults() -> None:
    s = make()
    assert (s.adaptive, s.target_quantile, s.clip_learning_rate) == (False, 0.5, 0.2)
    assert (s.count_noise_multiplier, s.expected_sites, s.delta) == (None, None, 1e-5)


def wrong_number(value: object) -> str | None:
    """The message for a value that is no finite number; None if it is one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"must be finite, got {value}"
    return None


@pytest.mark.parametrize("clip", [0, 0.0, -1.0, math.inf, math.nan, "1.0", True, None])
def test_clip_must_be_a_finite_positive_number(clip: object) -> None:
    why = wrong_number(clip) or f"must be > 0.0, got {float(clip)}"  # type: ignore[arg-type]
    refused(f"site_dp.clip: {why}", clip=clip)


def test_small_and_integer_clips_are_accepted() -> None:
    assert make(clip=1e-300).clip == 1e-300
    assert make(clip=3).clip == 3


@pytest.mark.parametrize("z", [-1e-9, -1, math.inf, math.nan, "1", False, None])
def test_noise_multiplier_must_be_a_finite_number_at_least_zero(z: object) -> None:
    why = wrong_number(z) or f"must be >= 0.0, got {float(z)}"  # type: ignore[arg-type]
    refused(f"site_dp.noise_multiplier: {why}", noise_multiplier=z)


def test_zero_and_integer_noise_multipliers_are_accepted() -> None:
    assert make(noise_multiplier=0).noise_multiplier == 0
    assert make(noise_multiplier=0.0, adaptive=True).noise(5) == (0.0, 0.0)
    assert make(noise_multiplier=2).noise_multiplier == 2


@pytest.mark.parametrize("adaptive", [1, 0, "yes", None])
def test_adaptive_must_be_a_bool(adaptive: object) -> None:
    refused(f"site_dp.adaptive: must be true or false, got {adaptive!r}", adaptive=adaptive)


@pytest.mark.parametrize(
    ("gamma", "why"),
    [
        (-0.01, "must be >= 0.0, got -0.01"),
        (1.01, "must be <= 1.0, got 1.01"),
        (math.nan, "must be finite, got nan"),
        ("0.5", "must be a number, got '0.5'"),
        (True, "must be a number, got True"),
        (None, "must be a number, got None"),
    ],
)
def test_target_quantile_must_be_in_the_unit_interval(gamma: object, why: str) -> None:
    refused(f"site_dp.target_quantile: {why}", target_quantile=gamma)


def test_target_quantile_bounds_are_included() -> None:
    assert make(target_quantile=0).target_quantile == 0
    assert make(target_quantile=1).target_quantile == 1
    assert make(target_quantile=1.0).target_quantile == 1.0


@pytest.mark.parametrize("eta", [-0.1, math.inf, math.nan, "0.2", True, None])
def test_clip_learning_rate_must_be_finite_and_at_least_zero(eta: object) -> None:
    why = wrong_number(eta) or f"must be >= 0.0, got {float(eta)}"  # type: ignore[arg-type]
    refused(f"site_dp.clip_learning_rate: {why}", clip_learning_rate=eta)


def test_a_zero_clip_learning_rate_is_accepted() -> None:
    assert make(clip_learning_rate=0).clip_learning_rate == 0
    assert make(clip_learning_rate=0.0).clip_learning_rate == 0.0


@pytest.mark.parametrize(
    ("m", "why"),
    [
        (0, "must be >= 1, got 0"),
        (-3, "must be >= 1, got -3"),
        (1.0, "must be an integer, got 1.0"),
        (2.5, "must be an integer, got 2.5"),
        (True, "must be an integer, got True"),
        ("3", "must be an integer, got '3'"),
    ],
)
def test_expected_sites_must_be_a_positive_integer(m: object, why: str) -> None:
    refused(f"site_dp.expected_sites: {why}", expected_sites=m)


def test_expected_sites_may_be_one_or_unset() -> None:
    assert make(expected_sites=1).expected_sites == 1
    assert make(expected_sites=None).expected_sites is None


@pytest.mark.parametrize("sigma_b", [-0.5, math.inf, math.nan, "2", True])
def test_count_noise_multiplier_must_be_finite_and_at_least_zero(sigma_b: object) -> None:
    why = wrong_number(sigma_b) or f"must be >= 0.0, got {float(sigma_b)}"  # type: ignore[arg-type]
    for adaptive in (False, True):
        refused(
            f"site_dp.count_noise_multiplier: {why}",
            count_noise_multiplier=sigma_b,
            adaptive=adaptive,
        )


def test_count_noise_must_exceed_half_the_noise_multiplier_when_adaptive() -> None:
    message = (
        "site_dp.count_noise_multiplier: must exceed noise_multiplier / 2 "
        "(1.0) for the sum's share z_Δ to exist, got {}"
    )
    for sigma_b in (1.0, 1, 0.5, 0.0):  # 2σ_b = z is not enough
        refused(
            message.format(float(sigma_b)),  # an integer is read as a number
            noise_multiplier=2.0,
            adaptive=True,
            count_noise_multiplier=sigma_b,
        )
    for z, sigma_b in ((0.8, 0.3), (1.0, 0.5), (1e-3, 5e-4)):  # small z too
        refused(
            "site_dp.count_noise_multiplier: must exceed noise_multiplier / 2 "
            f"({z / 2}) for the sum's share z_Δ to exist, got {sigma_b}",
            noise_multiplier=z,
            adaptive=True,
            count_noise_multiplier=sigma_b,
        )
    ok = make(noise_multiplier=2.0, adaptive=True, count_noise_multiplier=1.0001)
    assert ok.noise(3)[1] == 1.0001
    # without adaptive clipping there is no count to noise: any σ_b >= 0 is accepted
    assert make(noise_multiplier=2.0, count_noise_multiplier=0.5).noise(3) == (2.0, 0.0)
    assert make(noise_multiplier=2.0, count_noise_multiplier=0).noise(3) == (2.0, 0.0)


def test_count_noise_needs_noise_on_the_sum_when_adaptive() -> None:
    refused(
        "site_dp.count_noise_multiplier: needs noise_multiplier > 0 "
        "(without noise on the sum there is no DP to keep)",
        noise_multiplier=0.0,
        adaptive=True,
        count_noise_multiplier=0.25,
    )
    exact = make(noise_multiplier=0.0, adaptive=True, count_noise_multiplier=0.0)
    assert exact.noise(5) == (0.0, 0.0)
    assert make(noise_multiplier=0, count_noise_multiplier=0.25).noise(5) == (0, 0.0)


@pytest.mark.parametrize(
    ("delta", "why"),
    [
        (0, "must be > 0.0, got 0.0"),
        (0.0, "must be > 0.0, got 0.0"),
        (1, "must be < 1.0, got 1.0"),
        (1.0, "must be < 1.0, got 1.0"),
        (-1e-5, "must be > 0.0, got -1e-05"),
        (math.nan, "must be finite, got nan"),
        ("1e-5", "must be a number, got '1e-5'"),
        (True, "must be a number, got True"),
        (None, "must be a number, got None"),
    ],
)
def test_delta_must_be_in_the_open_unit_interval(delta: object, why: str) -> None:
    refused(f"site_dp.delta: {why}", delta=delta)


def test_delta_close_to_the_bounds_is_accepted() -> None:
    assert make(delta=1e-300).delta == 1e-300
    assert make(delta=0.999).delta == 0.999


def test_the_first_wrong_setting_is_named() -> None:
    refused("site_dp.clip: must be > 0.0, got -1.0", clip=-1, noise_multiplier=-1, delta=2)
    refused("site_dp.noise_multiplier: must be >= 0.0, got -1.0", noise_multiplier=-1, delta=2)


def test_given_count_noise_sets_the_sums_share() -> None:
    s = make(noise_multiplier=0.8, adaptive=True, count_noise_multiplier=2.0)
    z_sum, sigma_b = s.noise(9)
    assert sigma_b == 2.0
    assert z_sum == pytest.approx((0.8**-2 - 4.0**-2) ** -0.5, rel=1e-12)
    assert (z_sum**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(0.8, rel=1e-12)


def test_derived_count_noise_without_expected_sites_uses_the_realised_count() -> None:
    s = make(noise_multiplier=0.8, adaptive=True)
    assert s.noise(100) == adaptive_noise(0.8, 100)
    assert s.noise(100)[1] == 5.0
    assert s.noise(4) == adaptive_noise(0.8, 4)
    assert s.noise(4)[1] == 0.8


def test_adaptive_noise_without_noise_is_zero() -> None:
    assert adaptive_noise(0.0, 10) == (0.0, 0.0)
    assert adaptive_noise(0, 1000) == (0.0, 0.0)
    z_delta, sigma_b = adaptive_noise(0.8, 40)
    assert sigma_b == 2.0
    assert z_delta == pytest.approx((0.8**-2 - 4.0**-2) ** -0.5, rel=1e-12)
