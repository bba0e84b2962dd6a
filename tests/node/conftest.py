"""Fixtures shared by the state-store tests: every contract test runs on both backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.node.state import MemoryStateStore, StateStore
from fedsov.node.state_sqlite import SqliteStateStore


def sqlite_store(tmp_path: Path) -> StateStore:
    return SqliteStateStore(tmp_path / "state" / "fedsov.db")


def memory_store(tmp_path: Path) -> StateStore:
    return MemoryStateStore()


@pytest.fixture(params=[sqlite_store, memory_store], ids=["sqlite", "memory"])
def make(request: pytest.FixtureRequest) -> Callable[[Path], StateStore]:
    factory: Callable[[Path], StateStore] = request.param
    return factory
