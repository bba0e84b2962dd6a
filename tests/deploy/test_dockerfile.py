"""deploy/docker/Dockerfile, read statically (no Docker daemon here or in CI): both
variants' bases, a non-root final user, no key or kit copied in, and a HEALTHCHECK
that is a real ``fedsov`` command."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from fedsov.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
IGNORE = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        pending += line.removesuffix("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage (the global ARGs before the first FROM: stage 0)."""
    out: list[list[tuple[str, str]]] = [[]]
    for word, rest in instructions():
        if word == "FROM":
            out.append([])
        out[-1].append((word, rest))
    return out


def global_args() -> dict[str, str]:
    args = {}
    for word, rest in stages()[0]:
        assert word == "ARG", f"{word} before the first FROM"
        name, _, default = rest.partition("=")
        args[name] = default
    return args


def test_both_variants_have_their_base() -> None:
    args = global_args()
    assert args["VARIANT"] == "cpu"
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-(cudnn-)?runtime-ubuntu[\d.]+", args["CUDA_IMAGE"])
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert "${PYTHON_IMAGE} AS cpython" in froms
    assert "${CUDA_IMAGE} AS base-cuda" in froms
    assert "cpython AS base-cpu" in froms
    # the build and the runtime both stand on the base the VARIANT names
    assert "base-${VARIANT} AS build" in froms
    assert froms[-1] == "base-${VARIANT} AS runtime"


def test_torch_comes_from_the_pinned_version_for_each_variant() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG TORCH_VERSION=2.13.0" in text
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()  # the same pin as CI
    assert "cpu) index=" in text and "cuda) index=" in text
    assert "pip install -c constraints.txt ." in text


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    final = stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0  # numeric: runAsNonRoot can verify it
    assert gid.isdigit() and int(gid) != 0
    assert f"--uid {uid}" in " ".join(rest for word, rest in final if word == "RUN")
    assert [w for w, _ in final].index("USER") > max(
        i for i, (w, _) in enumerate(final) if w == "RUN"
    ), "a RUN after USER would run as the node's user; keep USER last"


def test_no_key_or_kit_is_copied_into_the_image() -> None:
    assert "ADD" not in [word for word, _ in instructions()]  # ADD fetches URLs, unpacks tars
    copied = [rest for word, rest in instructions() if word == "COPY"]
    from_context = [shlex.split(c) for c in copied if not c.startswith("--from=")]
    sources = [src for argv in from_context for src in argv[:-1]]
    assert sources == ["pyproject.toml", "README.md", "constraints.txt", "fedsov"]
    for line in copied:
        assert not re.search(r"\.(key|pem|crt)\b|kits?/|pki|secret", line), line
    ignored = IGNORE.read_text().splitlines()
    assert "*" in ignored and "**/*.key" in ignored  # nothing but the sources in the context


def test_entrypoint_and_healthcheck_are_fedsov_commands() -> None:
    final = dict(stages()[-1])
    assert json.loads(final["ENTRYPOINT"]) == ["fedsov"]
    check = final["HEALTHCHECK"]
    options, _, command = check.partition(" CMD ")
    assert "--start-period=" in options
    argv = json.loads(command)
    assert argv[:2] == ["fedsov", "health"]
    assert argv[argv.index("--config") + 1] == "/fedsov/node/node.toml"
    assert final["WORKDIR"] == "/fedsov/node"
    # the options it passes are the command's own
    result = CliRunner().invoke(app, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output
    for option in (a for a in argv[2:] if a.startswith("--")):
        assert option in result.output
