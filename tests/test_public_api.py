"""Every package lists its API in ``__all__`` (ruff's RUF022 keeps it sorted)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import fedsov
from fedsov import exceptions

# Generated protobuf code has no hand-kept API.
GENERATED = ("fedsov.proto",)

_TREE = pkgutil.walk_packages(fedsov.__path__, prefix="fedsov.")
PACKAGES = [
    *sorted(i.name for i in _TREE if i.ispkg and not i.name.startswith(GENERATED)),
    "fedsov.exceptions",
]


def test_every_package_is_covered() -> None:
    """Walking the tree finds the packages by name, fedsov.policy among them."""
    expected = {"fedsov.policy", "fedsov.policy.rules", "fedsov.node", "fedsov.participant"}
    assert expected <= set(PACKAGES)
    assert {"fedsov.config", "fedsov.transport", "fedsov.privacy", "fedsov.site"} <= set(PACKAGES)


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
