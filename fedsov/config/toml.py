"""Reading a TOML file into a validated section: every error names the file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from fedsov.config.errors import first_error
from fedsov.exceptions import ConfigError

__all__ = ["beside", "load_toml", "read_toml", "validate"]

_T = TypeVar("_T")


def read_toml(path: Path, *, what: str = "config file") -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and their TOML (a hash of the bytes pins exactly what was parsed)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the {what.removesuffix(' file')} is not UTF-8: {exc}") from exc
    try:
        return raw, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def validate(model: type[_T], data: dict[str, Any], *, file: Path) -> _T:
    """``data`` (read from ``file``) as a ``model``; relative paths resolve beside ``file``."""
    try:
        return TypeAdapter(model).validate_python(data, context={"base": file.parent})
    except ValidationError as exc:
        raise ConfigError(first_error(exc, model, file=str(file))) from None


def load_toml(model: type[_T], path: Path) -> _T:
    """Read ``path`` and validate it as a ``model``."""
    return validate(model, read_toml(path)[1], file=path)


def beside(path: Path, name: str) -> Path:
    """A default file ``name`` in ``path``'s folder (absolute, as a path read from it)."""
    out = path.parent / name
    return out if out.is_absolute() else out.resolve()
