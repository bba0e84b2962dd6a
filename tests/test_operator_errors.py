"""Operator mistakes get a message that says what to fix (issue 13, item 7): the
CLI prints messages verbatim, refuses an unknown log level without a traceback, and a
coordinator refuses a foreign state before it listens."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsov.cli import app
from fedsov.config import write_toml
from fedsov.coordinator import config as coordinator_config
from fedsov.coordinator.app import Coordinator
from fedsov.exceptions import ConfigError

runner = CliRunner()


def _coordinator_toml(tmp_path: Path, *, seed: int, extra: dict[str, object] | None = None) -> Path:
    return write_toml(
        tmp_path / f"coordinator-{seed}.toml",
        {
            "federation": {"name": "ops", "seed": seed, **(extra or {})},
            "server": {
                "address": "127.0.0.1:0",
                "insecure": True,
                "port_file": str(tmp_path / "port"),
            },
            "model": {
                "factory": "fedsov.simulation.models:mlp",
                "kwargs": {"in_features": 4, "hidden": 2, "num_classes": 2},
            },
            "rounds": {"num_rounds": 1, "min_sites": 1, "start_timeout_s": 0.2},
            "output": {"dir": str(tmp_path / "out")},
        },
    )


def test_error_messages_keep_their_brackets(tmp_path: Path) -> None:
    config = _coordinator_toml(tmp_path, seed=1, extra={"bogus": 1})
    result = runner.invoke(app, ["coordinator", "--config", str(config)])
    assert result.exit_code == 2
    assert "[federation]: unknown key 'bogus'" in result.stderr


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    config = _coordinator_toml(tmp_path, seed=1)
    result = runner.invoke(app, ["coordinator", "--config", str(config), "--log-level", "verbose"])
    assert result.exit_code == 2
    words = " ".join(result.stderr.replace("│", " ").split())  # the box wraps lines
    assert "'verbose' is not one of DEBUG, INFO, WARNING, ERROR" in words
    assert "Traceback" not in result.output + result.stderr


def test_a_foreign_state_is_refused_before_listening(tmp_path: Path) -> None:
    first = coordinator_config.load(_coordinator_toml(tmp_path, seed=1))
    summary = asyncio.run(Coordinator(first).run())  # no site comes: fails, state bound
    assert str(summary["status"]).startswith("failed")
    port_file = tmp_path / "port"
    port_file.unlink()
    other_seed = coordinator_config.load(_coordinator_toml(tmp_path, seed=2))
    with pytest.raises(ConfigError):
        asyncio.run(Coordinator(other_seed).run())
    assert not port_file.exists()  # it never listened
