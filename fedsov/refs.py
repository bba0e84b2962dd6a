"""Resolve ``"package.module:attribute"`` references used in config files."""

from __future__ import annotations

import importlib
from typing import Any

from fedsov.exceptions import ConfigError

__all__ = ["resolve_ref"]


def resolve_ref(ref: str, *, what: str = "reference") -> Any:
    """Import ``module:attr`` (attr may be dotted) and return the object.

    Raises ConfigError naming the reference when it is malformed or cannot be found.
    """
    module_name, sep, attr_path = ref.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"{what} {ref!r} must look like 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what} {ref!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigError(
                f"{what} {ref!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from exc
    return obj
