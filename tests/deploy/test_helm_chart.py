"""deploy/helm/fedsov, offline: rendered with its defaults and with
deploy/helm/values-consortium.yaml by Helm's own SDK (helm-python-sdk), every manifest
valid (strict) for a recent Kubernetes (kubernetes-validate), and lint clean."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "fedsov"
CONSORTIUM_VALUES = ROOT / "deploy" / "helm" / "values-consortium.yaml"
PLAN = ROOT / "simulations" / "consortium.toml"
KUBERNETES = kubernetes_validate.utils.latest_version()  # the newest schemas it bundles
HEALTH = ["fedsov", "health", "--config", "/fedsov/node/node.toml", "--timeout", "5"]
ROLE = {"global": "coordinator", "regional": "aggregator", "edge": "site"}


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm_python.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The release's manifests, each parsed (NOTES.txt aside)."""
    rendered = chart.render(values or {}, name="fed", namespace="fedsov")
    docs: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def consortium_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(CONSORTIUM_VALUES.read_text())
    return values


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.mark.parametrize("values", ["defaults", "consortium"])
def test_every_manifest_is_valid_kubernetes(chart: Any, values: str) -> None:
    docs = render(chart, consortium_values() if values == "consortium" else None)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names))


def test_the_coordinator_has_its_volume_service_and_probes(chart: Any) -> None:
    docs = render(chart)
    deployment = by_kind(docs, "Deployment")["coordinator"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["coordinator-state"]
    assert "coordinator-state" in by_kind(docs, "PersistentVolumeClaim")
    service = by_kind(docs, "Service")["coordinator"]
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 7443, "targetPort": "grpc", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    main = container(deployment)
    assert main["args"] == ["coordinator", "--config", "/fedsov/node/node.toml"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["exec"]["command"] == HEALTH


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def test_the_consortium_plan_has_a_workload_per_node(chart: Any) -> None:
    plan = tomllib.loads(PLAN.read_text())["nodes"]
    docs = render(chart, consortium_values())
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    assert sorted(deployments) == sorted(n["name"] for n in plan)
    for node in plan:
        deployment = deployments[node["name"]]
        role = ROLE[node["tier"]]
        main = container(deployment)
        assert main["args"][0] == role
        assert pod_labels(deployment)["fedsov/jurisdiction"] == node["jurisdiction"]
        if role == "site":  # a site only dials out: no Service, no probe
            assert node["name"] not in services
            assert not {"startupProbe", "readinessProbe", "livenessProbe"} & main.keys()
        else:
            assert services[node["name"]]["spec"]["selector"]["fedsov/node"] == node["name"]
            assert main["livenessProbe"]["exec"]["command"] == HEALTH


def test_each_node_gets_its_own_kit_and_key(chart: Any) -> None:
    for deployment in by_kind(render(chart, consortium_values()), "Deployment").values():
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["kit"]["configMap"]["name"] == f"{name}-kit"
        assert volumes["tls"]["secret"]["secretName"] == f"{name}-tls"
        mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
        key = mounts[f"/fedsov/node/{name}.key"]
        assert (key["name"], key["subPath"], key["readOnly"]) == ("tls", "tls.key", True)
        assert mounts[f"/fedsov/node/{name}.pem"]["subPath"] == "tls.crt"
        assert mounts["/fedsov/node/node.toml"]["subPath"] == "node.toml"
        assert mounts["/fedsov/node"]["name"] == "state"
        data = "test.npz" if container(deployment)["args"][0] != "site" else f"{name}.npz"
        assert mounts[f"/fedsov/node/data/{data}"] == {
            "name": "kit",
            "mountPath": f"/fedsov/node/data/{data}",
            "subPath": data,  # the ConfigMap's key: the file's base name
            "readOnly": True,
        }


def test_pods_run_as_the_images_non_root_user(chart: Any) -> None:
    for deployment in by_kind(render(chart, consortium_values()), "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        security = container(deployment)["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True


def test_a_site_with_a_gpu_requests_one(chart: Any) -> None:
    values = consortium_values()
    values["sites"][0].update(gpu=1, image={"tag": "cuda"}, runtimeClassName="nvidia")
    docs = render(chart, values)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    deployments = by_kind(docs, "Deployment")
    gpu_site = deployments[values["sites"][0]["name"]]
    resources = container(gpu_site)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 1
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["memory"] == "1Gi"  # the defaults are kept beside it
    assert container(gpu_site)["image"] == "fedsov:cuda"
    assert gpu_site["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"
    others = [d for name, d in deployments.items() if name != values["sites"][0]["name"]]
    assert not any("nvidia.com/gpu" in str(container(d).get("resources")) for d in others)


def test_a_jurisdiction_pins_its_pods(chart: Any) -> None:
    values = consortium_values()
    values["jurisdictionNodeSelectors"] = {"IN": {"topology.kubernetes.io/region": "ap-south-1"}}
    deployments = by_kind(render(chart, values), "Deployment")
    for name in ("agg-in", "mumbai", "delhi", "chennai"):
        selector = deployments[name]["spec"]["template"]["spec"]["nodeSelector"]
        assert selector == {"topology.kubernetes.io/region": "ap-south-1"}
    assert "nodeSelector" not in deployments["paris"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"sites": [{"name": "coordinator"}]}, "appears twice"),
        ({"sites": [{"name": "Paris"}]}, "does not match pattern"),
        ({"sites": [{"name": "paris", "gpu": -1}]}, "minimum"),
        ({"aggregators": [{"name": "agg-eu", "prot": 1}]}, "prot"),
    ],
)
def test_bad_values_are_refused_by_name(chart: Any, values: dict[str, Any], error: str) -> None:
    with pytest.raises(helm_python.HelmError, match=error):
        chart.render(values, name="fed", namespace="fedsov")


@pytest.mark.parametrize("values", ["defaults", "consortium"])
def test_lint_is_clean(values: str) -> None:
    given = consortium_values() if values == "consortium" else None
    report = helm_python.lint(CHART, given, strict=True, kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    # severity 2 is a warning, 3 an error; 1 (info) is "icon is recommended"
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
