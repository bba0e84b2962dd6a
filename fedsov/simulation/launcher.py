"""``fedsov simulate``: a whole federation on one machine, as real processes over mTLS."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedsov.config import Backoff, EvaluationConfig, SimulationRuntime, write_toml
from fedsov.exceptions import FedsovError
from fedsov.pki.identity import Role
from fedsov.pki.throwaway import NodePaths, NodeSpec, build_pki
from fedsov.simulation.data_prep import write_site_data
from fedsov.simulation.processes import ProcessGroup, federated_progress, tls_table
from fedsov.simulation.scenario import Scenario
from fedsov.simulation.sites import describe, start_sites

__all__ = ["run_simulation"]

console = Console(stderr=True)
OWNED = ("pki", "configs", "data", "logs", "models", "work", "state", "audit")
COORDINATOR = "coordinator"
EVALUATE = "fedsov.simulation.evaluation:evaluate_file"


def _coordinator_config(sc: Scenario, out: Path, pki: NodePaths, test_path: Path) -> dict[str, Any]:
    return {
        "federation": {"name": sc.name, "seed": sc.seed},
        "server": {
            "address": "127.0.0.1:0",
            "port_file": str(out / "coordinator.port"),
            **tls_table(pki),
        },
        "model": sc.model,
        "rounds": {
            "num_rounds": sc.rounds.num_rounds,
            "min_sites": sc.rounds.min_sites,
            **({"min_updates": sc.rounds.min_updates} if sc.rounds.min_updates else {}),
            "sites_per_round": sc.rounds.sites_per_round,
            "timeout_s": sc.rounds.timeout_s,
            "start_timeout_s": 300.0,
        },
        "training": sc.training,
        "strategy": sc.strategy.table(),
        "evaluation": EvaluationConfig(EVALUATE, {"path": str(test_path)}),
        "output": {"dir": str(out)},
    } | (
        ({"secure_aggregation": sc.secure} if sc.secure is not None else {})
        | ({"guardrails": sc.guardrails} if sc.guardrails is not None else {})
    )


def _site_config(sc: Scenario, index: int, port: int, pki: NodePaths, data: Path) -> dict[str, Any]:
    return {
        "site": {"name": f"site-{index}", "seed": sc.seed * 1000 + index, "device": "auto"},
        "upstream": {"address": f"127.0.0.1:{port}", "server_name": "localhost", **tls_table(pki)},
        "data": {"path": str(data)},
        "model": sc.model,
        "privacy": sc.privacy,
        "reconnect": Backoff(initial_s=0.2, max_s=5.0, max_attempts=20),
    }


def _progress(line: dict[str, Any], total: int) -> None:
    sites = line["sites"]
    accepted = [s for s in sites if s["status"] == "accepted"]
    eps = [s["epsilon"] for s in accepted if s["epsilon"] is not None]
    metrics = line["metrics"]
    acc = f"accuracy {metrics['accuracy']:.3f}" if "accuracy" in metrics else ""
    eps_text = f"ε max {max(eps):.2f}" if eps else "no DP"
    status = "" if line["completed"] else "  [red]failed: too few updates[/]"
    console.print(
        f"round {line['round']:>3}/{total}  {acc}  {eps_text}  "
        f"sites {len(accepted)}/{len(sites)}  {line['seconds']:.1f} s{status}"
        + federated_progress(line),
        highlight=False,
    )


def run_simulation(
    sc: Scenario,
    out: Path,
    *,
    log_level: str = "WARNING",
    runtime: SimulationRuntime | None = None,
) -> dict[str, Any]:
    """Run the scenario (its sites where ``runtime``, by default the scenario's
    ``[simulation]``, says); returns the summary the coordinator wrote to
    ``out/summary.json``."""
    runtime = runtime or sc.runtime
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("summary.json", "rounds.jsonl", "coordinator.port"):
        (out / name).unlink(missing_ok=True)
    console.print(
        f"[bold]fedsov simulate[/] {sc.name}: {sc.data.sites} sites, "
        f"{sc.data.dataset} ({sc.data.partition}), {sc.rounds.num_rounds} rounds, "
        f"{describe(runtime)} -> {out}"
    )
    names = [f"site-{i}" for i in range(1, sc.data.sites + 1)]
    data_paths, test_path = write_site_data(
        sc.data, seed=sc.seed, names=names, directory=out / "data"
    )
    site_paths = [data_paths[n] for n in names]
    nodes = [NodeSpec(COORDINATOR, Role.coordinator, "SIM", ("localhost", "127.0.0.1", "::1"))]
    nodes += [NodeSpec(f"site-{i}", Role.site, "SIM") for i in range(1, sc.data.sites + 1)]
    pki = build_pki(out / "pki", federation=sc.name, nodes=nodes)
    coord_cfg = write_toml(
        out / "configs" / "coordinator.toml",
        _coordinator_config(sc, out, pki[COORDINATOR], test_path),
    )
    rounds_log = out / "rounds.jsonl"
    started = time.monotonic()
    with ProcessGroup(out / "logs", log_level=log_level, console=console) as group:
        group.spawn(COORDINATOR, "coordinator", "--config", str(coord_cfg))
        port = group.wait_for_port(COORDINATOR, out / "coordinator.port")
        site_configs = {
            name: write_toml(
                out / "configs" / f"{name}.toml", _site_config(sc, i, port, pki[name], data_path)
            )
            for i, (name, data_path) in enumerate(zip(names, site_paths, strict=True), start=1)
        }
        started_sites = start_sites(
            group, site_configs, runtime, hosts_dir=out / "configs" / "hosts"
        )
        console.print(
            f"{started_sites}; the first round opens once they have joined", highlight=False
        )
        group.follow(COORDINATOR, rounds_log, lambda r: _progress(r, sc.rounds.num_rounds))
    summary_path = out / "summary.json"
    if not summary_path.exists():
        raise FedsovError(
            f"the coordinator wrote no summary; see {out / 'logs' / 'coordinator.log'}"
        )
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    summary["scenario"] = str(sc.source)
    summary["wall_seconds"] = round(time.monotonic() - started, 2)
    summary["simulation"] = dataclasses.asdict(runtime)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, out)
    return summary


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    table = Table(title=f"{summary['federation']}: {summary['status']}")
    for col in ("site", "examples", "rounds", "ε", "δ"):
        table.add_column(col, justify="right")
    for name, s in summary["sites"].items():
        eps = "off" if s["epsilon"] is None else f"{s['epsilon']:.3f}"
        delta = "-" if s["delta"] is None else f"{s['delta']:g}"  # None: DP off
        table.add_row(name, str(s["examples"]), str(s["rounds_contributed"]), eps, delta)
    console.print(table)
    acc = summary.get("final_accuracy")
    console.print(
        f"final accuracy {acc:.4f}" if acc is not None else "no accuracy measured",
        f"after {summary['rounds']} rounds; model {summary['model_sha256'][:16]}…;",
        f"summary: {out / 'summary.json'}",
        highlight=False,
    )
