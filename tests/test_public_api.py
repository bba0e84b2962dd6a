"""Every public package lists its API in ``__all__`` (ruff's RUF022 keeps it sorted)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from fedsov import exceptions

PACKAGES = [
    "fedsov.audit",
    "fedsov.codec",
    "fedsov.exceptions",
    "fedsov.models",
    "fedsov.strategy",
    "fedsov.pki",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_resolves_and_is_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr!r}"
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__.startswith(name)
    }
    assert public <= set(exported), f"{name} defines public names not in __all__"


def test_exception_tree_roots_at_fedsov_error() -> None:
    for attr in exceptions.__all__:
        assert issubclass(getattr(exceptions, attr), exceptions.FedsovError)
