"""What a site reports of its training time: rounded up to 0.1 s, never negative."""

from __future__ import annotations

import pytest

from fedsov.site.agent import training_seconds


@pytest.mark.parametrize(
    ("measured", "reported"),
    [(0.0, 0.0), (-1.0, 0.0), (0.004, 0.1), (0.3, 0.3), (1.23, 1.3), (59.99, 60.0)],
)
def test_training_time_is_reported_rounded_up_to_a_tenth(measured: float, reported: float) -> None:
    assert training_seconds(measured) == pytest.approx(reported)
