"""The committed on-disk fixtures (tests/fixtures/, written by make_fixtures.py).

Tests read copies: opening a ledger or a state store may repair or migrate it.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FEDERATION = "fixture-fed"
SITES = ("site-a", "site-b", "site-c")


def copy_fixture(version: str, into: Path) -> Path:
    """A copy of ``tests/fixtures/<version>`` at ``into``; returns it."""
    shutil.copytree(FIXTURES / version, into)
    return into


def sums(folder: Path) -> dict[str, str]:
    """What ``folder/SHA256SUMS`` says each of its files hashes to."""
    lines = (folder / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def hashes(folder: Path) -> dict[str, str]:
    """What each file under ``folder`` (but SHA256SUMS) hashes to."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "SHA256SUMS"
    }
