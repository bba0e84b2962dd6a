"""pydantic's validation errors as fedsov's: ``"{file}: {section.key}: {message}"``.

The first error is reported (the first wrong key in file order), in the words the
hand-written reader used: ``is required (found 'x': a typo?)``, ``unknown key 'x'
(did you mean 'y'?)``, ``must be >= 1, got 0``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any, Union

from pydantic import ValidationError
from pydantic_core import ErrorDetails

__all__ = ["KeyProblem", "first_error"]

_KINDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "dict_type": "a table",
    "dataclass_type": "a table",
    "dataclass_exact_type": "a table",
    "model_type": "a table",
}
_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


class KeyProblem(ValueError):
    """Raised by a section's cross-field check: ``key`` of the section is wrong, and why."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's mark of a mapping key: the key is named already
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unwrap(tp: Any) -> Any:
    """The type inside ``Annotated[...]`` and ``X | None``."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _keys(cls: Any) -> list[str]:
    """The keys a section accepts, as a file spells them."""
    out = []
    for f in dataclasses.fields(cls):
        info = getattr(cls, "__pydantic_fields__", {}).get(f.name)
        alias = getattr(info, "validation_alias", None)
        out.append(alias if isinstance(alias, str) else f.name)
    return out


def _type_at(root: Any, loc: Sequence[int | str]) -> Any:
    """The declared type at ``loc`` below ``root``, or None where it cannot be told."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if dataclasses.is_dataclass(tp) and isinstance(part, str):
            hints = typing.get_type_hints(tp, include_extras=True)
            names = dict(zip(_keys(tp), (f.name for f in dataclasses.fields(tp)), strict=True))
            name = names.get(part, part)
            if name not in hints:
                return None
            tp = hints[name]
        elif typing.get_origin(tp) in (list, tuple) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def _value(limit: object, value: object) -> object:
    if isinstance(limit, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _message(  # noqa: PLR0911 - one return per kind of error
    error: ErrorDetails, root: Any
) -> tuple[tuple[int | str, ...], str]:
    """(where, what) for one pydantic error."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        found = [str(k) for k in value] if isinstance(value, dict) else []
        close = difflib.get_close_matches(str(loc[-1]), found, n=1)
        return loc, "is required" + (f" (found {close[0]!r}: a typo?)" if close else "")
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return loc, f"must be {sign} {ctx[key]}, got {_value(ctx[key], value)}"
    if kind == "finite_number":
        return loc, f"must be finite, got {value}"
    if kind == "list_type":
        item = _type_at(root, (*loc, 0))
        what = "an array of tables ([[...]])" if dataclasses.is_dataclass(item) else "a list"
        return loc, f"must be {what}, got {value!r}"
    if kind in _KINDS:
        return loc, f"must be {_KINDS[kind]}, got {value!r}"
    if kind == "value_error":
        problem = ctx.get("error")
        if isinstance(problem, KeyProblem):
            return (*loc, problem.key), problem.message
        return loc, str(problem)
    return loc, error["msg"][:1].lower() + error["msg"][1:]


def _unknown(
    head: tuple[int | str, ...], loc: tuple[int | str, ...], root: Any, file_prefix: str
) -> str:
    parent, key = loc[:-1], str(loc[-1])
    where = f"[{_dotted((*head, *parent))}]" if head or parent else "top level"
    tp = _type_at(root, parent)
    known = sorted(_keys(tp)) if dataclasses.is_dataclass(tp) else []
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = f" (known: {', '.join(known)})" if known and not close else ""
    return f"{file_prefix}{where}: unknown key {key!r}{hint}{listed}"


def first_error(exc: ValidationError, root: Any, *, prefix: str = "", file: str = "") -> str:
    """The first of ``exc``'s errors as one line; ``prefix`` is the section's own dotted name."""
    head: tuple[int | str, ...] = (prefix,) if prefix else ()
    file_prefix = f"{file}: " if file else ""
    error = exc.errors()[0]
    if error["type"] in _UNKNOWN:
        return _unknown(head, tuple(error["loc"]), root, file_prefix)
    loc, message = _message(error, root)
    return f"{file_prefix}{_dotted((*head, *loc))}: {message}"
