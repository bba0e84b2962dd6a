"""Every public package lists its API in a complete, sorted ``__all__``."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["fedsov.codec", "fedsov.exceptions", "fedsov.strategy", "fedsov.pki"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr!r}"


def test_exception_tree_roots_at_fedsov_error() -> None:
    from fedsov import exceptions

    for attr in exceptions.__all__:
        assert issubclass(getattr(exceptions, attr), exceptions.FedsovError)
