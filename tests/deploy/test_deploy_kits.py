"""The deployment files against the kits ``fedsov provision`` really writes for
simulations/consortium.toml: every file the compose file and the Helm chart put in
/fedsov/node is one the kit holds (or the node makes: key, certificate), every port
and host name is the one the kits listen on and dial, and each server's kit can be
probed by ``fedsov health`` as the containers run it."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fedsov.cli.main import app

helm_python = pytest.importorskip("helm_python")

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "simulations" / "consortium.toml"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
CHART = ROOT / "deploy" / "helm" / "fedsov"
VALUES = ROOT / "deploy" / "helm" / "values-consortium.yaml"
NODE_DIR = "/fedsov/node"


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("provision") / "kits"
    result = CliRunner().invoke(app, ["provision", str(PLAN), "--out", str(out), "--demo-data"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def manifest(kits: Path) -> dict[str, Any]:
    kits_json: dict[str, Any] = json.loads((kits / "kits.json").read_text())
    return kits_json


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict[str, Any]]:
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(yaml.safe_load(VALUES.read_text()), name="c", namespace="c")
    texts = [text for path, text in rendered.items() if not path.endswith("NOTES.txt")]
    docs = [d for text in texts for d in yaml.safe_load_all(text) if d]
    return {
        f"{d['kind']}/{d['metadata']['name']}": d
        for d in docs
        if d["kind"] in {"Deployment", "Service"}
    }


def config(kits: Path, node: str) -> dict[str, Any]:
    return tomllib.loads((kits / node / "node.toml").read_text())


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_every_node_kit_has_a_workload_and_a_service(
    manifest: dict[str, Any], deployments: dict[str, dict[str, Any]]
) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())["services"]
    nodes = {name for name, kit in manifest["kits"].items() if kit["role"] != "operator"}
    assert nodes == set(compose)
    assert nodes == {k.split("/")[1] for k in deployments if k.startswith("Deployment/")}


def test_the_chart_lays_out_each_kit_as_provision_wrote_it(
    kits: Path, manifest: dict[str, Any], deployments: dict[str, dict[str, Any]]
) -> None:
    for name, kit in manifest["kits"].items():
        if kit["role"] == "operator":
            continue
        (main,) = deployments[f"Deployment/{name}"]["spec"]["template"]["spec"]["containers"]
        assert main["args"] == [kit["role"], "--config", f"{NODE_DIR}/node.toml"]
        assert kit["start_command"] == ["fedsov", kit["role"], "--config", "node.toml"]
        mounts = {m["mountPath"].removeprefix(f"{NODE_DIR}/"): m for m in main["volumeMounts"]}
        for path, mount in mounts.items():
            if mount["name"] == "kit":  # from the kit's ConfigMap: a file provision wrote
                assert (kits / name / path).is_file(), f"{name}: no {path} in its kit"
        assert mounts[kit["key"]]["subPath"] == "tls.key"  # the files the node makes
        assert mounts[kit["cert"]]["subPath"] == "tls.crt"
        tls = config(kits, name).get("server") or config(kits, name)["upstream"]
        assert {tls["cert"], tls["key"], tls["ca"]} <= set(mounts)
        if kit["listen"] is not None:
            port = port_of(kit["listen"])
            assert main["ports"][0]["containerPort"] == port
            service = deployments[f"Service/{name}"]
            assert service["spec"]["ports"][0]["port"] == port
        if kit["dials"] is not None:  # the upstream's Service answers to its kit's address
            host, _, port = kit["dials"].rpartition(":")
            upstream = deployments[f"Service/{host}"]
            assert upstream["spec"]["ports"][0]["port"] == int(port)


def test_compose_mounts_each_kit_and_its_key_where_node_toml_names_them(
    kits: Path, manifest: dict[str, Any]
) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        kit = manifest["kits"][name]
        secret = service["secrets"][0]
        assert secret["target"] == f"{NODE_DIR}/{kit['key']}"
        section = "server" if kit["listen"] is not None else "upstream"
        assert config(kits, name)[section]["key"] == kit["key"]  # relative to node.toml
        volume = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", service["volumes"][0])
        assert volume.endswith(f"/{kit['folder']}:{NODE_DIR}")
        if kit["dials"] is not None:  # compose service names are the hosts kits dial
            assert kit["dials"].rpartition(":")[0] in services


def test_health_probes_each_server_kit_on_loopback(
    kits: Path, manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedsov.cli.health import read_probe

    runner = CliRunner()
    for name, kit in manifest["kits"].items():
        if kit["listen"] is None:
            continue
        # what the node's holder and then the operator run: its key, CSR and certificate
        monkeypatch.chdir(kits / name)
        made = runner.invoke(app, kit["csr_command"][1:])
        assert made.exit_code == 0, made.output
        monkeypatch.chdir(kits)
        signed = runner.invoke(app, kit["sign_command"][1:])
        assert signed.exit_code == 0, signed.output
        probe = read_probe(kits / name / "node.toml")
        assert probe.address == f"127.0.0.1:{port_of(kit['listen'])}"  # bound on 0.0.0.0
        assert probe.name == probe.server_name == name  # the name its certificate carries
