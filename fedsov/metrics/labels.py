"""Label values that stay few: a metric label never carries free text."""

from __future__ import annotations

import re

__all__ = ["reason_code"]

_CODE = re.compile(r"[a-z][a-z0-9-]{0,39}")


def reason_code(reason: str, *, default: str) -> str:
    """The code at the head of ``reason`` (``"below-k: only 2 of 3 ..."`` -> ``below-k``),
    or ``default`` when it does not start with one."""
    head = reason.split(":", 1)[0].strip()
    return head if _CODE.fullmatch(head) else default
