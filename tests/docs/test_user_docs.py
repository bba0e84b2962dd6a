"""Every command in the three users' guides is run by a test.

Each shell block (```bash / ```sh) of docs/site-operator.md, consortium-operator.md
and researcher.md carries a marker on the line above it:

- ``<!-- doc-test: run -->``: run here, block after block as one bash script per page
  (``set -euo pipefail``), in a scratch folder with the repository's simulations/ cut
  to 2 rounds each (CI time; the commands are the page's, verbatim);
- ``<!-- doc-test: by PATH -->``: PATH (a test file or folder) runs these commands:
  it must exist and name each command (``fedsov <command>``, the script) it runs;
- ``<!-- doc-test: not run: WHY -->``: only for commands CI cannot run (docker,
  kubectl, helm, pip: a daemon, a cluster, a package index), with the reason.

A block without a marker fails the test, so a new command cannot slip in untested.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("site-operator.md", "consortium-operator.md", "researcher.md")
NOT_RUNNABLE = {"docker", "kubectl", "helm", "pip", "sudo"}
GROUPS = {"pki", "policy", "privacy", "audit", "models"}  # `fedsov GROUP COMMAND`
ROUNDS = 2
BLOCK = re.compile(
    r"(?:<!-- doc-test: (?P<marker>[^\n]*?) -->\n)?```(?:bash|sh)\n(?P<body>.*?)```", re.S
)


@dataclass(frozen=True)
class Block:
    doc: str
    marker: str  # "" when the block has none
    body: str

    def commands(self) -> list[list[str]]:
        """Each command line (continuations joined, comments and `[optional]` dropped)."""
        text = self.body.replace("\\\n", " ")
        lines = []
        for raw in text.splitlines():
            line = re.sub(r"\[[^\]]*\]", "", raw.split(" #", 1)[0])  # a synopsis' [--opt]
            if line.strip() and not line.strip().startswith("#"):
                lines.append(shlex.split(line, comments=True))
        return [c for c in lines if c]


def blocks(doc: str) -> list[Block]:
    text = (ROOT / "docs" / doc).read_text()
    return [Block(doc, m["marker"] or "", m["body"]) for m in BLOCK.finditer(text)]


ALL = [b for doc in DOCS for b in blocks(doc)]


def names(command: list[str]) -> list[str]:
    """What a test running ``command`` must name: the fedsov command, or the program."""
    words = [w for w in command if w not in ("(cd", "&&", "do", "done;", "for")]
    heads = []
    for i, word in enumerate(words):
        if word == "fedsov" and i + 1 < len(words):
            sub = words[i + 1]
            heads.append(sub)
            if sub in GROUPS and i + 2 < len(words):
                heads.append(words[i + 2])
        elif word.endswith(".sh") or word in ("sha256sum",):
            heads.append(word)
    return heads


SHELL_WORDS = {"for", "do", "done", "done;", "(cd", "&&", "then", "fi"}


def program_of(command: list[str]) -> str | None:
    """The program a command line runs; None for shell syntax alone (a loop's head, an
    assignment)."""
    if command[0] == "for" or "=" in command[0]:
        return None
    return next((w for w in command if w not in SHELL_WORDS), None)


def test_every_block_has_a_marker() -> None:
    assert len(ALL) >= 15, "the guides lost their commands"
    unmarked = [f"{b.doc}: {b.body.splitlines()[0]}" for b in ALL if not b.marker]
    assert not unmarked, f"shell blocks without a doc-test marker: {unmarked}"


@pytest.mark.parametrize("block", [b for b in ALL if b.marker.startswith("not run")], ids=str)
def test_a_block_not_run_needs_what_ci_lacks(block: Block) -> None:
    assert block.marker.removeprefix("not run:").strip(), "say why it cannot run"
    for command in block.commands():
        program = program_of(command)
        if program is None:
            continue
        assert Path(program).name in NOT_RUNNABLE, (
            f"{block.doc}: {shlex.join(command)} could run in CI: run it or name its test"
        )


@pytest.mark.parametrize("block", [b for b in ALL if b.marker.startswith("by ")], ids=str)
def test_a_block_run_elsewhere_names_a_test_that_runs_it(block: Block) -> None:
    path = ROOT / block.marker.removeprefix("by ").strip()
    assert path.exists(), f"{block.doc}: {path} does not exist"
    files = [path] if path.is_file() else sorted(path.rglob("test_*.py"))
    source = "\n".join(f.read_text() for f in files)
    for command in block.commands():
        if command[0].endswith("pytest"):
            assert (ROOT / command[1]).exists(), f"{block.doc}: no {command[1]}"
            continue
        for name in names(command):
            assert f'"{name}"' in source or f"'{name}'" in source, (
                f"{block.doc}: {shlex.join(command)}: {path.name} never runs {name!r}"
            )


def _scratch(tmp_path: Path) -> dict[str, str]:
    """The folder a page's commands run in: simulations/ with every scenario at 2 rounds."""
    shutil.copytree(ROOT / "simulations", tmp_path / "simulations")
    for toml in (tmp_path / "simulations").rglob("*.toml"):
        text = re.sub(r"(?m)^num_rounds = \d+", f"num_rounds = {ROUNDS}", toml.read_text())
        toml.write_text(text)
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.e2e
@pytest.mark.parametrize("doc", [d for d in DOCS if any(b.marker == "run" for b in blocks(d))])
def test_the_page_runs(doc: str, tmp_path: Path) -> None:
    script = "set -euo pipefail\n" + "\n".join(b.body for b in blocks(doc) if b.marker == "run")
    env = _scratch(tmp_path)
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        start_new_session=True,
    )
    assert proc.returncode == 0, f"{doc}:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
