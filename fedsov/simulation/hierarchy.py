"""``fedsov simulate PLAN``: a whole multi-tier federation from its plan, on one machine.

Every node of the plan runs as its own process with its own certificate: the
coordinator, each regional aggregator, each edge site. All of them are started
with the same plan file and enforce it (plan hash, admission by certificate,
residency, export thresholds, site-level DP). A node the plan's
``[policy.secure_aggregation]`` binds gets its ``[secure_aggregation]`` from there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedsov.config import Backoff, DataChoice, SimulationRuntime, TlsPaths, write_toml
from fedsov.exceptions import FedsovError
from fedsov.pki.identity import Role
from fedsov.pki.throwaway import NodePaths, NodeSpec, build_pki
from fedsov.policy.plan import Plan, PlanNode, Tier
from fedsov.provision import configs
from fedsov.provision.configs import NodeFiles
from fedsov.simulation.data_prep import write_site_data
from fedsov.simulation.processes import ProcessGroup, federated_progress
from fedsov.simulation.scenario import DataPlan
from fedsov.simulation.sites import describe, start_sites

__all__ = ["Deployment", "prepare_deployment", "run_plan_simulation", "write_plan_data"]

console = Console(stderr=True)
SERVER_HOSTS = ("localhost", "127.0.0.1")
LISTEN = "127.0.0.1:0"  # every server binds a free loopback port and writes it to its port file
RECONNECT = Backoff(initial_s=0.2, max_s=5.0, max_attempts=30)


@dataclass
class Deployment:
    """Everything a simulated federation needs on disk before a process starts."""

    plan: Plan
    out: Path
    plan_file: Path
    pki: dict[str, NodePaths]
    data: dict[str, Path]
    test_file: Path
    ports: dict[str, int] = field(default_factory=dict)

    def port_file(self, node: str) -> Path:
        return self.out / "ports" / f"{node}.port"

    def config_file(self, node: str) -> Path:
        return self.out / "configs" / f"{node}.toml"

    def node_out(self, node: str) -> Path:
        return self.out / "nodes" / node

    @property
    def operator_config(self) -> Path:
        return self.out / "operator.toml"


def operator_name(plan: Plan) -> str:
    """The name of a simulation's operator certificate: one no plan node has."""
    names = {n.name for n in plan.nodes}
    return next(c for c in ("operator", "operator-1", "operator-2", *names) if c not in names)


def write_operator_config(dep: Deployment) -> Path:
    """``operator.toml`` for `fedsov status --config` on the running coordinator."""
    top = dep.plan.global_node
    paths = dep.pki[operator_name(dep.plan)]
    return write_toml(
        dep.operator_config,
        {
            "operator": {
                "address": f"127.0.0.1:{dep.ports[top.name]}",
                "server_name": top.name,
                "cert": str(paths.cert),
                "key": str(paths.key),
                "ca": str(paths.ca),
            }
        },
    )


def prepare_deployment(plan: Plan, out: Path) -> Deployment:
    """Copy the plan, issue every node's certificate, and split the data over the sites."""
    out = out.resolve()
    owned = ("pki", "configs", "data", "logs", "nodes", "ports", "models", "work", "state", "audit")
    for name in owned:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("summary.json", "rounds.jsonl", "plan.toml", "operator.toml"):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    plan_file = out / "plan.toml"
    shutil.copyfile(plan.source, plan_file)  # byte for byte: the same SHA-256 everywhere
    nodes = [
        NodeSpec(
            n.name,
            plan.role_of(n.tier),
            n.jurisdiction,
            tuple(dict.fromkeys((*n.hosts, *SERVER_HOSTS, n.name)))
            if n.tier is not Tier.EDGE
            else (),
        )
        for n in plan.nodes
    ]
    # the researcher's own certificate, for `fedsov status` / `fedsov stop` on this run
    nodes.append(NodeSpec(operator_name(plan), Role.operator, plan.global_node.jurisdiction))
    pki = build_pki(out / "pki", federation=plan.federation, nodes=nodes)
    data, test_file = write_plan_data(plan, out / "data")
    return Deployment(plan, out, plan_file, pki, data, test_file)


def write_plan_data(plan: Plan, directory: Path) -> tuple[dict[str, Path], Path]:
    """Split the plan's ``[simulation]`` data over its edge sites, one file each in
    ``directory``; returns {site: file} and the held-out test file."""
    sim = plan.simulation
    if sim is None:
        raise FedsovError(f"{plan.source}: a plan needs a [simulation] table to be simulated")
    edges = [n.name for n in plan.nodes if n.tier is Tier.EDGE]
    choice = {f.name: getattr(sim, f.name) for f in dataclasses.fields(DataChoice)}
    data_plan = DataPlan(**choice, sites=len(edges))
    return write_site_data(data_plan, seed=plan.seed, names=edges, directory=directory)


def _files(dep: Deployment, node: PlanNode) -> NodeFiles:
    """Where a simulated node's config finds its files: all under the run's folder."""
    paths = dep.pki[node.name]
    tls = TlsPaths(cert=paths.cert, key=paths.key, ca=paths.ca)
    if node.tier is Tier.EDGE:
        return NodeFiles(tls, dep.plan_file, data=dep.data[node.name])
    output = dep.out if node.tier is Tier.GLOBAL else dep.node_out(node.name)
    return NodeFiles(
        tls,
        dep.plan_file,
        output=output,
        port_file=dep.port_file(node.name),
        test_data=dep.test_file,
    )


def _upstream_address(dep: Deployment, node: PlanNode) -> str:
    assert node.upstream is not None
    return f"127.0.0.1:{dep.ports[node.upstream]}"


def coordinator_config(dep: Deployment) -> dict[str, Any]:
    top = dep.plan.global_node
    return configs.coordinator_config(dep.plan, _files(dep, top), listen=LISTEN)


def aggregator_config(dep: Deployment, node: PlanNode) -> dict[str, Any]:
    return configs.aggregator_config(
        dep.plan,
        node,
        _files(dep, node),
        listen=LISTEN,
        upstream=_upstream_address(dep, node),
        reconnect=RECONNECT,
    )


def site_config(dep: Deployment, node: PlanNode, index: int) -> dict[str, Any]:
    return configs.site_config(
        dep.plan,
        node,
        _files(dep, node),
        upstream=_upstream_address(dep, node),
        index=index,
        sites=len(dep.data),
        reconnect=RECONNECT,
    )


def _app_env(plan: Plan) -> dict[str, str]:
    """PYTHONPATH with a Flower app's folder first: the plan's model may be the app's."""
    trainer = plan.simulation.trainer if plan.simulation else None
    if trainer is None or trainer.app_dir is None:
        return {}
    paths = [str(trainer.app_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def launch(dep: Deployment, group: ProcessGroup, runtime: SimulationRuntime | None = None) -> None:
    """Start every node, upstream first, each once its upstream listens; the sites
    last, as ``runtime`` says (a process each by default)."""
    plan = dep.plan
    top = plan.global_node
    env = _app_env(plan)
    write_toml(dep.config_file(top.name), coordinator_config(dep))
    group.spawn(top.name, "coordinator", "--config", str(dep.config_file(top.name)), env=env)
    dep.ports[top.name] = group.wait_for_port(top.name, dep.port_file(top.name))
    console.print(f"watch it: fedsov status --config {write_operator_config(dep)}", highlight=False)
    pending = [n for n in plan.nodes if n.tier is not Tier.GLOBAL]
    edge_index = 0
    sites: dict[str, Path] = {}
    while pending:
        ready = [n for n in pending if n.upstream in dep.ports]
        if not ready:
            raise FedsovError("some nodes' upstreams never start: run `fedsov policy check`")
        for node in ready:
            pending.remove(node)
            if node.tier is Tier.REGIONAL:
                write_toml(dep.config_file(node.name), aggregator_config(dep, node))
                group.spawn(
                    node.name, "aggregator", "--config", str(dep.config_file(node.name)), env=env
                )
                dep.ports[node.name] = group.wait_for_port(node.name, dep.port_file(node.name))
            else:
                edge_index += 1
                sites[node.name] = write_toml(
                    dep.config_file(node.name), site_config(dep, node, edge_index)
                )
    hosts = dep.out / "configs" / "hosts"
    started = start_sites(group, sites, runtime or SimulationRuntime(), hosts_dir=hosts, env=env)
    console.print(f"{started}; the first round opens once they have joined", highlight=False)


def run_plan_simulation(
    plan: Plan,
    out: Path,
    *,
    log_level: str = "WARNING",
    runtime: SimulationRuntime | None = None,
) -> dict[str, Any]:
    """Run every node of ``plan``; the sites where ``runtime`` (by default the plan's
    ``[simulation]``) says."""
    if runtime is None:
        runtime = plan.simulation.runtime() if plan.simulation else SimulationRuntime()
    dep = prepare_deployment(plan, out)
    tiers = {t: sum(1 for n in plan.nodes if n.tier is t) for t in Tier}
    console.print(
        f"[bold]fedsov simulate[/] {plan.federation} (plan {plan.sha256[:12]}): "
        f"{tiers[Tier.REGIONAL]} regional aggregators, {tiers[Tier.EDGE]} sites in "
        f"{', '.join(sorted({n.jurisdiction for n in plan.nodes}))}; "
        f"{plan.rounds.num_rounds} rounds, {describe(runtime)} -> {dep.out}"
    )
    started = time.monotonic()
    rounds_log = dep.out / "rounds.jsonl"
    with ProcessGroup(dep.out / "logs", log_level=log_level, console=console) as group:
        launch(dep, group, runtime)
        group.follow(
            plan.global_node.name, rounds_log, lambda r: _show_round(r, plan.rounds.num_rounds)
        )
    summary = compose_summary(dep)
    summary["wall_seconds"] = round(time.monotonic() - started, 2)
    summary["simulation"] = dataclasses.asdict(runtime)
    (dep.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print(summary, dep.out)
    return summary


def _show_round(r: dict[str, Any], total: int) -> None:
    exported = [s["site"] for s in r["sites"] if s["status"] == "accepted"]
    left_out = [f"{s['site']} ({s['status']})" for s in r["sites"] if s["status"] != "accepted"]
    acc = r["metrics"].get("accuracy")
    console.print(
        f"round {r['round']:>3}/{total}  "
        + (f"accuracy {acc:.3f}  " if acc is not None else "")
        + f"aggregates from {', '.join(exported) or 'nobody'}"
        + (f"; left out: {', '.join(left_out)}" if left_out else "")
        + federated_progress(r),
        highlight=False,
    )


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def compose_summary(dep: Deployment) -> dict[str, Any]:
    """The coordinator's summary, plus per-region, per-site and per-jurisdiction results."""
    plan = dep.plan
    summary = _read(dep.out / "summary.json")
    if not summary:
        raise FedsovError(f"the coordinator wrote no summary; see {dep.out / 'logs'}")
    summary["plan"] = str(plan.source)
    summary["plan_sha256"] = plan.sha256
    regions: dict[str, Any] = {}
    sites: dict[str, Any] = {}
    for node in plan.nodes:
        if node.tier is Tier.REGIONAL:
            region = _read(dep.node_out(node.name) / "summary.json")
            history = region.get("history", [])
            accuracies = [h["accuracy"] for h in history if "accuracy" in h and h["completed"]]
            regions[node.name] = {
                "jurisdiction": node.jurisdiction,
                "status": region.get("status", "no summary"),
                "accuracy": accuracies[-1] if accuracies else None,
                "exported_rounds": len(region.get("exported_rounds", [])),
                "declined_rounds": region.get("declined_rounds", {}),
                "site_level_epsilon": region.get("site_level_epsilon"),
                "site_level_delta": region.get("site_level_delta"),
            }
            for name, site in region.get("sites", {}).items():
                sites[name] = {
                    **site,
                    "jurisdiction": plan.node(name).jurisdiction,
                    "upstream": node.name,
                }
    for name, site in summary.get("sites", {}).items():
        if plan.node(name).tier is Tier.EDGE:
            sites[name] = {
                **site,
                "jurisdiction": plan.node(name).jurisdiction,
                "upstream": plan.global_node.name,
            }
    jurisdictions: dict[str, Any] = {}
    for j in sorted({n.jurisdiction for n in plan.nodes}):
        members = {k: v for k, v in sites.items() if v["jurisdiction"] == j}
        eps = [v["epsilon"] for v in members.values() if v.get("epsilon") is not None]
        exports = [
            r["site_level_epsilon"]
            for r in regions.values()
            if r["jurisdiction"] == j and r["site_level_epsilon"] is not None
        ]
        jurisdictions[j] = {
            "sites": sorted(members),
            "max_site_epsilon": max(eps) if eps else None,
            # what those ε protect: "sample" one record, "update" a site's whole dataset
            "site_levels": sorted({v["level"] for v in members.values() if v.get("level")}),
            "export_epsilon": max(exports) if exports else None,
            "budget": plan.policy.budgets.jurisdiction_epsilon.get(j),
        }
    summary["regions"] = regions
    summary["edge_sites"] = dict(sorted(sites.items()))
    summary["jurisdictions"] = jurisdictions
    return summary


_UNITS = {"sample": "record", "update": "dataset"}  # PrivacyLevel -> what one ε protects


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print(summary: dict[str, Any], out: Path) -> None:
    table = Table(title=f"{summary['federation']}: {summary['status']}")
    for col in (
        "jurisdiction",
        "sites",
        "max site ε (unit)",
        "export ε (site-level)",
        "export budget",
    ):
        table.add_column(col, justify="right")
    for j, info in summary["jurisdictions"].items():
        units = "/".join(_UNITS.get(level, level) for level in info.get("site_levels", []))
        site_eps = _fmt(info["max_site_epsilon"])
        table.add_row(
            j,
            str(len(info["sites"])),
            f"{site_eps} ({units})" if info["max_site_epsilon"] is not None and units else site_eps,
            *(_fmt(info[k]) for k in ("export_epsilon", "budget")),
        )
    console.print(table)
    for name, region in summary["regions"].items():
        acc = region["accuracy"]
        console.print(
            f"{name} ({region['jurisdiction']}): exported {region['exported_rounds']} rounds, "
            f"declined {len(region['declined_rounds'])}"
            + (f", regional accuracy {acc:.3f}" if acc is not None else ""),
            highlight=False,
        )
    acc = summary.get("final_accuracy")
    console.print(
        f"final global accuracy {acc:.4f}" if acc is not None else "no accuracy measured",
        f"after {summary['rounds']} rounds; summary: {out / 'summary.json'}",
        highlight=False,
    )
