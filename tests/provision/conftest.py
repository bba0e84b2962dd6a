"""Fixtures of the provision tests: the small consortium plan (small_consortium.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from small_consortium import small_consortium


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    return small_consortium(tmp_path / "consortium-small.toml")
