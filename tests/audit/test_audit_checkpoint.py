"""Checkpoints travel as JSON and are read back from JSON lines or an array."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_helpers import digest

from fedsov.audit import Checkpoint, append_checkpoint, read_checkpoints
from fedsov.exceptions import AuditError

CP = Checkpoint(node="site-1", seq=63, sha256=digest("head"))


def test_json_round_trip() -> None:
    text = CP.to_json()
    assert json.loads(text) == {"node": "site-1", "seq": 63, "sha256": digest("head")}
    assert Checkpoint.from_json(text) == CP
    assert Checkpoint.from_json(text.encode()) == CP


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (json.dumps({"node": "site-1", "seq": -1, "sha256": digest("x")}), "seq must be"),
        ('{"node": "site-1", "seq": 1, "sha256": "ABC"}', "sha256 must be"),
        (json.dumps({"node": "", "seq": 1, "sha256": digest("x")}), "node must be"),
        ('{"node": "site-1", "seq": 1}', "expected fields"),
        ("[1]", "not a JSON object"),
    ],
)
def test_bad_checkpoints_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Checkpoint.from_json(text)


def test_a_checkpoints_file_of_lines_or_an_array(tmp_path: Path) -> None:
    lines = tmp_path / "held.jsonl"
    other = Checkpoint(node="site-2", seq=1, sha256=digest("x"))
    append_checkpoint(lines, CP)
    append_checkpoint(lines, other)
    assert read_checkpoints(lines) == [CP, other]
    array = tmp_path / "held.json"
    array.write_text(json.dumps([CP.to_dict(), other.to_dict()], indent=2))
    assert read_checkpoints(array) == [CP, other]


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "held.jsonl"
    append_checkpoint(path, CP)
    with open(path, "ab") as f:
        f.write(b'{"node": "site-1"}\n')
    with pytest.raises(AuditError, match=r"held\.jsonl, line 2: expected fields"):
        read_checkpoints(path)
