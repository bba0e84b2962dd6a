"""Typed, strict reading of TOML config files; every error names the file and key."""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsov.exceptions import ConfigError

__all__ = ["Table", "load_toml"]

_MISSING: Any = object()


def load_toml(path: Path) -> Table:
    """Parse ``path`` as TOML; relative paths inside it resolve against its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return Table(data, file=path, prefix="")


class Table:
    """One TOML table. Getters check types; ``done()`` rejects keys nobody asked for."""

    def __init__(self, data: Mapping[str, Any], *, file: Path, prefix: str) -> None:
        self._data = data
        self.file = file
        self._prefix = prefix
        self._used: set[str] = set()

    def _where(self, key: str) -> str:
        dotted = f"{self._prefix}.{key}" if self._prefix else key
        return f"{self.file}: {dotted}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._where(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self._data

    def _get(self, key: str, default: Any, kinds: tuple[type, ...], kind_name: str) -> Any:
        self._used.add(key)
        if key not in self._data:
            if default is _MISSING:
                close = difflib.get_close_matches(key, [str(k) for k in self._data], n=1)
                hint = f" (found {close[0]!r}: a typo?)" if close else ""
                raise self.error(key, f"is required{hint}")
            return default
        value = self._data[key]
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"must be {kind_name}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.error(key, f"must be {kind_name}, got {value!r}")
        return value

    def string(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, (str,), "a string")

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._get(key, default, (bool,), "true or false")

    def integer(
        self, key: str, default: Any = _MISSING, *, min: int | None = None, max: int | None = None
    ) -> Any:
        value = self._get(key, default, (int,), "an integer")
        if isinstance(value, int) and not isinstance(value, bool):
            if min is not None and value < min:
                raise self.error(key, f"must be >= {min}, got {value}")
            if max is not None and value > max:
                raise self.error(key, f"must be <= {max}, got {value}")
        return value

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        min: float | None = None,
        max: float | None = None,
        exclusive_min: bool = False,
    ) -> Any:
        value = self._get(key, default, (int, float), "a number")
        if value is None:
            return None
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, f"must be finite, got {value}")
        if min is not None and (value <= min if exclusive_min else value < min):
            raise self.error(key, f"must be {'>' if exclusive_min else '>='} {min}, got {value}")
        if max is not None and value > max:
            raise self.error(key, f"must be <= {max}, got {value}")
        return value

    def path(self, key: str, default: Any = _MISSING) -> Any:
        value = self.string(key, default)
        if not isinstance(value, str):
            return value
        if not value:
            raise self.error(key, "must not be empty")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.file.parent / p).resolve()

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default, (list,), "a list of strings")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, got {value!r}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        """A free-form inline table (e.g. keyword arguments); empty if absent."""
        return dict(self._get(key, {}, (dict,), "a table"))

    def keys(self) -> list[str]:
        return [str(k) for k in self._data]

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]``); empty if absent."""
        items = self._get(key, [], (list,), "an array of tables ([[...]])")
        prefix = f"{self._prefix}.{key}" if self._prefix else key
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(f"{key}[{i}]", "must be a table")
            out.append(Table(item, file=self.file, prefix=f"{prefix}[{i}]"))
        return out

    def table(self, key: str, *, required: bool = False) -> Table:
        prefix = f"{self._prefix}.{key}" if self._prefix else key
        data = self._get(key, _MISSING if required else {}, (dict,), "a table")
        return Table(data, file=self.file, prefix=prefix)

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._used)
        if unknown:
            where = f"[{self._prefix}]" if self._prefix else "top level"
            close = difflib.get_close_matches(unknown[0], sorted(self._used), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = f" (known: {', '.join(sorted(self._used))})" if self._used and not close else ""
            raise ConfigError(f"{self.file}: {where}: unknown key {unknown[0]!r}{hint}{known}")
