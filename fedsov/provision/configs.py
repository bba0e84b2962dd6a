"""Each node's config from the federation plan: the one way fedsov writes node configs.

``fedsov simulate`` (fedsov.simulation.hierarchy) and ``fedsov provision`` both call
these; they differ only in where the files live (``NodeFiles``: absolute paths in a
simulation, paths relative to the kit folder in a kit), in the addresses, and in
how patiently a participant reconnects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsov.config import Backoff, EvaluationConfig, TlsPaths
from fedsov.policy.plan import Plan, PlanNode
from fedsov.policy.runtime import export_requirement

__all__ = [
    "EVALUATE",
    "NodeFiles",
    "aggregator_config",
    "coordinator_config",
    "site_config",
]

EVALUATE = "fedsov.simulation.evaluation:evaluate_file"
START_TIMEOUT_S = 300.0  # how long a server waits for its participants before round 1
REGION_DEADLINE = 0.8  # a region's deadline, as a share of the upstream's round timeout


@dataclass(frozen=True)
class NodeFiles:
    """Where one node's config finds its files: absolute, or relative to the config's folder."""

    tls: TlsPaths  # the node's certificate and key, and the federation CA's certificate
    plan: Path  # the plan, byte for byte
    output: Path | None = None  # a server's output folder
    port_file: Path | None = None  # a server: where it writes the port it bound
    data: Path | None = None  # a site's data file
    test_data: Path | None = None  # an evaluating server's held-out set (None: no evaluation)


def _tls(files: NodeFiles) -> dict[str, str]:
    tls = files.tls
    return {"cert": str(tls.cert), "key": str(tls.key), "ca": str(tls.ca)}


def _server(files: NodeFiles, listen: str) -> dict[str, Any]:
    port_file = {"port_file": str(files.port_file)} if files.port_file is not None else {}
    return {"address": listen, **port_file, **_tls(files)}


def _upstream(node: PlanNode, files: NodeFiles, address: str) -> dict[str, Any]:
    assert node.upstream is not None
    # the upstream's certificate must name it: the TLS name checked, whatever the address
    return {"address": address, "server_name": node.upstream, **_tls(files)}


def _evaluation(files: NodeFiles) -> dict[str, EvaluationConfig]:
    if files.test_data is None:
        return {}
    return {"evaluation": EvaluationConfig(EVALUATE, {"path": str(files.test_data)})}


def _output(files: NodeFiles) -> dict[str, Any]:
    return {"output": {"dir": str(files.output)}} if files.output is not None else {}


def coordinator_config(plan: Plan, files: NodeFiles, *, listen: str) -> dict[str, Any]:
    """The global node's config; it listens on ``listen`` (``host:port``)."""
    top = plan.global_node
    secure = plan.secure_aggregation_for(top.name)  # of the sites directly below it
    config: dict[str, Any] = {
        "federation": {"name": plan.federation, "seed": plan.seed, "plan": str(files.plan)},
        "server": _server(files, listen),
        "model": plan.model,
        "rounds": {
            "num_rounds": plan.rounds.num_rounds,
            "min_sites": len(plan.children(top.name)),  # every child connected before round 1
            "min_updates": 1,  # a region that may not export this round is left out
            "sites_per_round": plan.sites_per_round_of(top.name),  # sites directly below
            "timeout_s": plan.rounds.timeout_s,
            "start_timeout_s": START_TIMEOUT_S,
        },
        "training": plan.training,
        **_evaluation(files),
        **_output(files),
    }
    if secure is not None:
        config["secure_aggregation"] = secure
    return config


def aggregator_config(
    plan: Plan,
    node: PlanNode,
    files: NodeFiles,
    *,
    listen: str,
    upstream: str,
    reconnect: Backoff,
) -> dict[str, Any]:
    """A regional aggregator's config: it listens on ``listen`` and dials ``upstream``."""
    need = export_requirement(plan, node.name)
    config: dict[str, Any] = {
        "aggregator": {"name": node.name, "seed": plan.seed},
        "federation": {"name": plan.federation, "plan": str(files.plan)},
        "server": _server(files, listen),
        "upstream": _upstream(node, files, upstream),
        "model": plan.model,
        "rounds": {
            "min_sites": need.min_sites,
            "sites_per_round": plan.sites_per_round_of(node.name),
            "first_round_sites": len(plan.children(node.name)),  # every site in round 1
            "timeout_s": plan.rounds.timeout_s * REGION_DEADLINE,
            "start_timeout_s": START_TIMEOUT_S,
        },
        **_evaluation(files),
        "reconnect": reconnect,
        **_output(files),
    }
    dp = plan.policy.site_dp
    if need.site_dp and dp is not None:
        config["site_dp"] = dp
    secure = plan.secure_aggregation_for(node.name)
    if secure is not None:
        config["secure_aggregation"] = secure
    return config


def site_config(
    plan: Plan,
    node: PlanNode,
    files: NodeFiles,
    *,
    upstream: str,
    index: int,
    sites: int,
    reconnect: Backoff,
) -> dict[str, Any]:
    """An edge site's config: it dials ``upstream``. ``index`` (from 1) of the plan's
    ``sites`` edge sites seeds it and, for a Flower app, names its partition."""
    data = {"data": {"path": str(files.data)}} if files.data is not None else {}
    config: dict[str, Any] = {
        "site": {"name": node.name, "seed": plan.seed * 1000 + index, "device": "auto"},
        "federation": {"plan": str(files.plan)},
        "upstream": _upstream(node, files, upstream),
        **data,
        "model": plan.model,
        "privacy": plan.privacy,
        "reconnect": reconnect,
    }
    trainer = plan.simulation.trainer if plan.simulation else None
    if trainer is not None:  # the app reads the same partition, through its node_config
        node_config: dict[str, Any] = {
            **trainer.node_config,
            "partition-id": index - 1,
            "num-partitions": sites,
        }
        if files.data is not None:
            node_config["data-path"] = str(files.data)
        config["trainer"] = dataclasses.replace(trainer, node_config=node_config)
    return config
