"""The pieces every config section is made of: the ``section`` decorator and strict types.

A section is a frozen pydantic dataclass: positional and keyword construction, ``replace``
and ``asdict`` work as on a plain dataclass, and a wrong value raises ConfigError naming
``section.key``. Scalars are strict (a bool is not an integer, a string is not a number;
an integer is accepted as a number) and numbers must be finite.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar, dataclass_transform

import pydantic.dataclasses
from pydantic import BeforeValidator, ConfigDict, Field, Strict, ValidationError, ValidationInfo
from pydantic_core import ArgsKwargs

from fedsov.config.errors import KeyProblem, first_error
from fedsov.exceptions import ConfigError

__all__ = [
    "Bool",
    "ConfigPath",
    "Int",
    "KeyProblem",
    "Number",
    "Section",
    "Str",
    "fields_of",
    "one_of",
    "section",
    "with_fields",
]

Int = Annotated[int, Strict()]
Number = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]

SETTINGS = ConfigDict(
    extra="forbid",
    allow_inf_nan=False,
    validate_by_name=True,
    validate_by_alias=True,
    arbitrary_types_allowed=False,
)


def _path(value: object, info: ValidationInfo) -> object:
    """A path from a string; relative to the file's folder when read from a file."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    if not value:
        raise ValueError("must not be empty")
    path = Path(value).expanduser()
    base = (info.context or {}).get("base")
    if path.is_absolute() or base is None:
        return path
    return (Path(base) / path).resolve()


ConfigPath = Annotated[Path, BeforeValidator(_path)]
"""A path; in a file, relative paths resolve against the file's folder."""


def one_of(*choices: str) -> BeforeValidator:
    """A string that must be one of ``choices``; the error lists them."""

    def check(value: object) -> object:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return BeforeValidator(check)


class Section:
    """What the ``section`` decorator adds; ``SECTION`` names it in errors from code."""

    SECTION: ClassVar[str] = ""


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, Field))
def section(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a frozen, validated section; bad values raise ConfigError."""
    validated: Any = pydantic.dataclasses.dataclass(frozen=True, config=SETTINGS)(cls)
    init: Callable[..., None] = validated.__init__
    names = [f.name for f in dataclasses.fields(validated)]

    @functools.wraps(init)
    def __init__(self: object, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if len(args) > len(names):
            raise ConfigError(f"{cls.__name__} takes {len(names)} values, got {len(args)}")
        kwargs.update(zip(names, args, strict=False))
        try:
            init(self, **kwargs)
        except ValidationError as exc:
            where = getattr(validated, "SECTION", "")
            raise ConfigError(first_error(exc, validated, prefix=where)) from None

    validated.__init__ = __init__
    return validated  # type: ignore[no-any-return]


def fields_of(data: Any) -> dict[str, Any]:
    """The keyword values a before-validator sees (a dict, or from code the call's kwargs)."""
    if isinstance(data, dict):
        return data
    kwargs = getattr(data, "kwargs", None)
    return dict(kwargs or {})


def with_fields(data: Any, values: dict[str, Any]) -> Any:
    """``data`` with ``values`` as its keyword values, in the form it came in."""
    if isinstance(data, dict):
        return values
    return ArgsKwargs(tuple(getattr(data, "args", ()) or ()), values)
