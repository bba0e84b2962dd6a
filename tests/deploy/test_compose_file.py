"""deploy/docker-compose.yml, parsed (no Docker here or in CI): a service for every node
of simulations/consortium.toml and nothing else, each with its own kit folder and its
own key as a compose secret, started after its upstream is healthy."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fedsov.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
PLAN = ROOT / "simulations" / "consortium.toml"
ROLE = {"global": "coordinator", "regional": "aggregator", "edge": "site"}
NODE_DIR = "/fedsov/node"  # the image's WORKDIR, where its HEALTHCHECK reads node.toml


def expand(value: str) -> str:
    """Compose's ``${VAR:-default}`` with no variable set."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved
    return doc


@pytest.fixture(scope="module")
def nodes() -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in tomllib.loads(PLAN.read_text())["nodes"]}


def test_every_plan_node_has_its_service(
    compose: dict[str, Any], nodes: dict[str, dict[str, Any]]
) -> None:
    services = compose["services"]
    assert sorted(services) == sorted(nodes)
    for name, node in nodes.items():
        assert services[name]["command"] == [
            ROLE[node["tier"]],
            "--config",
            f"{NODE_DIR}/node.toml",
        ]


def test_one_image_built_here_never_pulled(compose: dict[str, Any]) -> None:
    images = {s["image"] for s in compose["services"].values()}
    assert images == {"${FEDSOV_IMAGE:-fedsov:cpu}"}
    for service in compose["services"].values():
        assert service["pull_policy"] == "never"
        assert "user" not in service  # the image's non-root user
        assert "ports" not in service  # nothing published on the host
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]


def test_each_node_mounts_its_own_kit_and_key(
    compose: dict[str, Any], nodes: dict[str, dict[str, Any]]
) -> None:
    secrets = compose["secrets"]
    assert sorted(secrets) == sorted(f"{name}-key" for name in nodes)
    for name, service in compose["services"].items():
        (volume,) = service["volumes"]
        host, container = expand(volume).split(":")
        assert container == NODE_DIR
        # relative to the compose file's folder: kits/ at the repository root
        assert (COMPOSE.parent / host).resolve() == ROOT / "kits" / name
        (secret,) = service["secrets"]
        assert secret == {"source": f"{name}-key", "target": f"{NODE_DIR}/{name}.key"}
        key = (COMPOSE.parent / expand(secrets[f"{name}-key"]["file"])).resolve()
        assert key == ROOT / "kits" / name / f"{name}.key"


def test_nodes_start_after_their_upstream_is_healthy(
    compose: dict[str, Any], nodes: dict[str, dict[str, Any]]
) -> None:
    services = compose["services"]
    for name, node in nodes.items():
        service = services[name]
        if "upstream" in node:
            assert service["depends_on"] == {node["upstream"]: {"condition": "service_healthy"}}
        else:
            assert "depends_on" not in service
        if node["tier"] == "edge":  # a site serves nothing to probe
            assert service["healthcheck"] == {"disable": True}
        else:
            test = service["healthcheck"]["test"]
            assert test[:3] == ["CMD", "fedsov", "health"]
            assert test[test.index("--config") + 1] == f"{NODE_DIR}/node.toml"


def test_the_healthcheck_is_a_real_fedsov_command(compose: dict[str, Any]) -> None:
    argv = compose["services"]["coordinator"]["healthcheck"]["test"][2:]
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    assert all(opt in result.output for opt in argv if opt.startswith("--"))
