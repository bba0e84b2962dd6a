"""Strategy settings checked as the config sections are: a bad value raises ConfigError."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import pydantic
from pydantic import ConfigDict, ValidationError

from fedsov.exceptions import ConfigError

__all__ = ["checked_settings"]

_F = TypeVar("_F", bound=Callable[..., None])

_SETTINGS = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)


def checked_settings(init: _F) -> _F:
    """Validate a strategy constructor's keyword settings against their annotations;
    ConfigError names ``strategy.<setting>`` and what is wrong with it."""
    validated = pydantic.validate_call(config=_SETTINGS)(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            validated(self, *args, **kwargs)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"] if part not in ("self", 0))
            name = getattr(self, "name", type(self).__name__)
            value = (
                ""
                if error["type"] == "unexpected_keyword_argument"
                else (f", got {error['input']!r}")
            )
            raise ConfigError(
                f"strategy.{key or 'settings'}: {error['msg']}{value} ({name})"
            ) from None

    return wrapper  # type: ignore[return-value]
