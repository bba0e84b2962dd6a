"""One TOML writer: mappings whose values may be sections, written as a file reads them back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import TypeAdapter

__all__ = ["dump_toml", "to_toml_data", "write_toml"]


def to_toml_data(value: Any) -> Any:
    """``value`` as TOML data: sections become tables (by their file keys), paths strings.

    ``None`` has no TOML spelling: keys set to None are left out (they take their default).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(type(value), "__pydantic_validator__"):
            value = TypeAdapter(type(value)).dump_python(value, by_alias=True)
        else:
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_toml_data(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_toml_data(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def dump_toml(data: Mapping[str, Any]) -> str:
    """``data`` (tables, values, sections) as TOML text."""
    return tomli_w.dumps(to_toml_data(data))


def write_toml(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as TOML at ``path`` (creating its folder); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_toml(data), encoding="utf-8")
    return path
