"""Golden outputs of the CLI's JSON commands: tests/fixtures/golden/<case>.json.

Each case runs one ``fedsov ... --json`` command (``fedsov audit head`` always prints
JSON) through typer's CliRunner, in a copy of the committed fixtures
(tests/fixtures/v1, v2; see make_fixtures.py) or, for ``policy check``, on the plans
in simulations/, and compares its exit code and parsed output with the golden file:
structure-equal JSON (key order does not matter), floats within a relative 1e-6.
Normalised, because they change on every run: the report's ``generated`` time and
any path under the test's temporary folder (then ``<tmp>``).

To rewrite the golden files after an intended change of output (or after
regenerating the fixtures), run

    FEDSOV_UPDATE_GOLDEN=1 pytest -p no:randomly tests/test_cli_golden.py

and review ``git diff tests/fixtures/golden`` before committing it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixture_files import FIXTURES, SITES, copy_fixture
from typer.testing import CliRunner

from fedsov.cli import app

GOLDEN = FIXTURES / "golden"
REPO = FIXTURES.parent.parent
UPDATE = os.environ.get("FEDSOV_UPDATE_GOLDEN") == "1"
REL_TOL = 1e-6
VOLATILE_KEYS = frozenset({"generated"})  # the compliance report's creation time

runner = CliRunner()


def _remove_line(path: Path, number: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: number - 1] + lines[number:]))


@dataclass(frozen=True)
class Case:
    name: str
    command: str  # after ``fedsov``, split on spaces
    where: str = "v2/run"  # a fixture folder the command runs in (a copy), or "repo"
    prepare: Callable[[Path], None] | None = None

    @property
    def args(self) -> list[str]:
        return self.command.split()


COORDINATOR = "coordinator/audit/ledger.jsonl"
PRIVACY_LEDGERS = " ".join(f"work/{s}/{s}.privacy-ledger.jsonl" for s in SITES)
PLANS = [
    "simulations/consortium.toml",
    *sorted(
        f"simulations/violations/{p.name}" for p in (REPO / "simulations/violations").glob("*.toml")
    ),
]

CASES = [
    Case(
        "audit-verify-coordinator",
        f"audit verify {COORDINATOR} --cert pki/coordinator/coordinator.pem --json",
    ),
    Case(
        "audit-verify-site-with-checkpoints",
        "audit verify work/site-a/site-a.audit.jsonl --cert pki/site-a/site-a.pem "
        "--checkpoints coordinator/audit/checkpoints/site-a.jsonl --json",
    ),
    Case(
        "audit-verify-removed-record",
        "audit verify work/site-b/site-b.audit.jsonl --cert pki/site-b/site-b.pem --json",
        prepare=lambda run: _remove_line(run / "work/site-b/site-b.audit.jsonl", 3),
    ),
    Case("audit-reconcile", f"audit reconcile work/site-a/site-a.audit.jsonl {COORDINATOR} --json"),
    Case("audit-head", f"audit head {COORDINATOR}"),
    Case("audit-report", "audit report . --json"),
    Case("models-list", "models list coordinator --json"),
    Case("models-list-v1", "models list coordinator --json", where="v1"),
    Case("models-show-latest", "models show coordinator latest --json"),
    Case("models-show-round-1", "models show coordinator 1 --json"),
    Case(
        "privacy-epsilon",
        "privacy epsilon --sample-rate 0.02 --noise-multiplier 1.1 --steps 80 --json",
    ),
    Case(
        "privacy-epsilon-rdp",
        "privacy epsilon --sample-rate 0.05 --noise-multiplier 1.1 --steps 40 --delta 1e-6 "
        "--accountant rdp --json",
    ),
    Case("privacy-noise", "privacy noise --target-epsilon 2 --sample-rate 0.02 --steps 80 --json"),
    Case("privacy-report", f"privacy report {PRIVACY_LEDGERS} --json"),
    *(
        Case(f"policy-check-{Path(plan).stem}", f"policy check {plan} --json", where="repo")
        for plan in PLANS
    ),
]


def normalise(value: Any, tmp: str) -> Any:
    """``value`` with what changes from run to run replaced by a placeholder."""
    if isinstance(value, dict):
        return {
            k: "<timestamp>" if k in VOLATILE_KEYS else normalise(v, tmp) for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v, tmp) for v in value]
    if isinstance(value, str):
        return value.replace(tmp, "<tmp>")
    return value


def assert_same(got: Any, want: Any, where: str = "$") -> None:
    """Structure-equal JSON: same keys and lengths, equal values, floats within REL_TOL."""
    number = (int, float)
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {got!r} is not an object"
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list), f"{where}: {got!r} is not a list"
        assert len(got) == len(want), f"{where}: {len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool) and isinstance(got, number):
        assert math.isclose(got, want, rel_tol=REL_TOL, abs_tol=1e-12), f"{where}: {got} != {want}"
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r} != {want!r}"


def run_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    if case.where == "repo":
        cwd = REPO
    else:
        version, _, sub = case.where.partition("/")
        cwd = copy_fixture(version, tmp_path / version) / sub
    if case.prepare is not None:
        case.prepare(cwd)
    monkeypatch.chdir(cwd)
    result = runner.invoke(app, case.args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    try:
        output = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"{case.name}: not JSON (exit {result.exit_code}): {result.output}")
    return {
        "command": f"fedsov {case.command}",
        "exit_code": result.exit_code,
        "output": normalise(output, str(tmp_path)),
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_json_output_matches_its_golden_file(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = run_case(case, tmp_path, monkeypatch)
    golden = GOLDEN / f"{case.name}.json"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(got, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
        pytest.skip(f"rewrote {golden.relative_to(REPO)}: review the diff")
    if not golden.is_file():
        pytest.fail(f"no golden file {golden.relative_to(REPO)}; run with FEDSOV_UPDATE_GOLDEN=1")
    want = json.loads(golden.read_text())
    assert_same(got, want)


def test_every_golden_file_has_its_case() -> None:
    """A case renamed or removed leaves no stale golden file behind."""
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(c.name for c in CASES)


def test_the_comparison_is_structural_with_a_float_tolerance() -> None:
    assert_same({"a": 1, "b": [1.0, "x"]}, {"b": [1.0 + 1e-9, "x"], "a": 1})
    for got, want in [
        ({"a": 1}, {"a": 1, "b": 2}),  # a key missing
        ([1, 2], [1]),  # a length
        ({"a": 1.0}, {"a": 1.1}),  # a float beyond tolerance
        ({"a": True}, {"a": 1}),  # a type
        ({"a": "1"}, {"a": 1}),
    ]:
        with pytest.raises(AssertionError):
            assert_same(got, want)
