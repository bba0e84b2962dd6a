"""Atomic writes: right mode, no temp files left, old content kept on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fedsov.pki._files import PRIVATE_MODE, write_atomic


def test_write_atomic_mode_and_no_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "k.key"
    write_atomic(target, b"secret", mode=PRIVATE_MODE)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["k.key"]


def test_failed_write_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "c.pem"
    write_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.pem"]
