"""``fedsov provision PLAN --out KITS``: one kit folder per node of a federation plan.

A kit holds the node's config (paths relative to the kit), the plan byte for byte,
the CA's certificate, the script that makes the node's key and CSR on the node,
and a README. No private key is ever written into a kit: a kit folder that already
holds one is refused, and with ``force`` its other files are rewritten around it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from fedsov.config import Backoff, TlsPaths, write_toml
from fedsov.exceptions import ConfigError, PolicyViolation
from fedsov.fileio import write_atomic
from fedsov.pki.identity import Role, validate_name
from fedsov.policy.check import check_plan
from fedsov.policy.plan import Plan, PlanNode, Tier
from fedsov.provision import configs, layout
from fedsov.provision.addresses import Addresses, Network
from fedsov.provision.authority import FederationCA, federation_ca
from fedsov.provision.commands import request_script
from fedsov.provision.kit import Kit, node_kit, operator_kit, start_order
from fedsov.provision.readme import Context, index_readme, node_readme, operator_readme

__all__ = ["DemoData", "Provisioned", "provision"]

DemoData = Callable[[Plan, Path], tuple[Mapping[str, Path], Path]]
"""Writes the plan's demo data in a folder: {site: file} and the test file."""

_SCRIPT_MODE = 0o755
RECONNECT = Backoff()  # a deployed participant outlives its upstream's restarts


@dataclass(frozen=True)
class Provisioned:
    """What a provisioning wrote."""

    out: Path
    ca: FederationCA
    ca_in_kits: bool
    kits: tuple[Kit, ...]  # plan nodes in start order, then the operator kit
    order: tuple[str, ...]


def _refuse_violations(plan: Plan) -> None:
    violations = check_plan(plan)
    if violations:
        lines = "; ".join(f"{v.node}: {v.rule}: {v.reason}" for v in violations)
        raise PolicyViolation(
            f"{plan.source} breaks its own policy ({lines}); fix the plan until "
            f"`fedsov policy check {plan.source}` says plan OK"
        )


def _guard_keys(out: Path, kits: list[str], *, force: bool) -> None:
    """Never replace a key: refuse kit folders that hold one, unless ``force``."""
    held = sorted(str(p.relative_to(out)) for k in kits for p in (out / k).glob("*.key"))
    if held and not force:
        raise ConfigError(
            f"{out} already holds private keys ({', '.join(held)}): provisioning never "
            "replaces a key; use --force to rewrite the kits' other files around them "
            "(keys, CSRs and certificates are kept), or another --out"
        )


def _crl(plan: Plan) -> Path | None:
    """The plan's revocation list, relative to the plan's folder (kits copy it beside it)."""
    if plan.revocation_list is None:
        return None
    try:
        return plan.revocation_list.relative_to(plan.source.resolve().parent)
    except ValueError:
        raise ConfigError(
            f"{plan.source}: federation.revocation_list {plan.revocation_list} is outside "
            "the plan's folder; put the CRL beside the plan so each kit carries it"
        ) from None


def _common_files(plan: Plan, ca: FederationCA, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plan.source, folder / layout.PLAN)  # byte for byte: the same SHA-256
    crl = _crl(plan)
    if crl is not None:
        assert plan.revocation_list is not None
        if not plan.revocation_list.is_file():
            raise ConfigError(f"{plan.source}: revocation_list {plan.revocation_list} not found")
        (folder / crl).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plan.revocation_list, folder / crl)
    write_atomic(folder / layout.CA_CERT, ca.cert_pem)


def _files(node: PlanNode, port: int | None, *, demo: bool) -> configs.NodeFiles:
    name = node.name
    tls = TlsPaths(
        cert=Path(layout.cert_file(name)), key=Path(layout.key_file(name)), ca=Path(layout.CA_CERT)
    )
    plan_file = Path(layout.PLAN)
    if node.tier is Tier.EDGE:
        return configs.NodeFiles(tls, plan_file, data=layout.data_file(name))
    return configs.NodeFiles(
        tls,
        plan_file,
        output=Path(layout.OUTPUT_DIR),
        port_file=Path(layout.PORT_FILE) if port == 0 else None,
        test_data=Path(layout.TEST_DATA) if demo else None,
    )


def _config(plan: Plan, node: PlanNode, addresses: Addresses, *, demo: bool) -> dict[str, object]:
    files = _files(node, addresses.ports.get(node.name), demo=demo)
    if node.tier is Tier.GLOBAL:
        return configs.coordinator_config(plan, files, listen=addresses.listen(node))
    if node.tier is Tier.REGIONAL:
        return configs.aggregator_config(
            plan,
            node,
            files,
            listen=addresses.listen(node),
            upstream=addresses.upstream(node),
            reconnect=RECONNECT,
        )
    edges = [n.name for n in plan.nodes if n.tier is Tier.EDGE]
    return configs.site_config(
        plan,
        node,
        files,
        upstream=addresses.upstream(node),
        index=edges.index(node.name) + 1,
        sites=len(edges),
        reconnect=RECONNECT,
    )


def _script(folder: Path, kit: Kit) -> None:
    text = request_script(kit.name, kit.csr).encode()
    write_atomic(folder / layout.SCRIPT, text, mode=_SCRIPT_MODE)


def _place_demo_data(plan: Plan, out: Path, demo_data: DemoData, servers: list[str]) -> None:
    """The plan's demo partition into each site's kit, the test set into each server's."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".demo-data-") as staging:
        data, test = demo_data(plan, Path(staging))
        for name, file in data.items():
            target = out / name / layout.data_file(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(file, target)
        for name in servers:
            target = out / name / layout.TEST_DATA
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(test, target)


def _operator_config(kit: Kit) -> dict[str, object]:
    """operator.toml, as ``fedsov status --config`` reads it (fedsov.config.OperatorFile)."""
    files = kit.files
    return {
        "operator": {
            "address": kit.dials,  # the coordinator's
            "cert": files["cert"],
            "key": files["key"],
            "ca": layout.CA_CERT,
            "server_name": kit.upstream,  # the name the coordinator's certificate carries
        }
    }


def provision(
    plan: Plan,
    out: Path,
    *,
    network: Network,
    ca_dir: Path | None = None,
    demo_data: DemoData | None = None,
    force: bool = False,
    operator: str = "operator",
) -> Provisioned:
    """Write a kit per plan node and the operator's kit into ``out``.

    Refuses a plan that fails its policy check, and kit folders that hold a private
    key unless ``force`` (which keeps keys, CSRs and certificates). ``ca_dir``: the
    federation CA (``fedsov pki init``); without it one is made in ``out/ca``.
    """
    _refuse_violations(plan)
    addresses = Addresses(plan, network)
    if operator in {n.name for n in plan.nodes} or operator == layout.CA_DIR:
        raise ConfigError(
            f"the operator kit {operator!r} would share a folder with "
            f"{'the CA' if operator == layout.CA_DIR else 'a plan node'}; "
            "give --operator another name"
        )
    validate_name(operator, what="operator name")
    out = out.resolve()
    order = start_order(plan)
    _guard_keys(out, [*order, operator], force=force)
    out.mkdir(parents=True, exist_ok=True)
    ca = federation_ca(out, federation=plan.federation, ca_dir=ca_dir)
    ca_in_kits = ca.directory.resolve() == out / layout.CA_DIR
    ca_label = layout.CA_DIR if ca_in_kits else str(ca.directory.resolve())
    demo = demo_data is not None
    ctx = Context(plan, ca_label, ca_in_kits, demo, loopback_ports=0 in addresses.ports.values())
    kits = [node_kit(plan, plan.node(name), addresses, ca_dir=ca_label) for name in order]
    for kit in kits:
        folder = out / kit.folder
        _common_files(plan, ca, folder)
        write_toml(folder / layout.CONFIG, _config(plan, plan.node(kit.name), addresses, demo=demo))
        _script(folder, kit)
        write_atomic(folder / layout.README, node_readme(ctx, kit).encode())
        if kit.role is Role.site:
            (folder / layout.DATA_DIR).mkdir(exist_ok=True)
    if demo_data is not None:
        servers = [k.name for k in kits if k.role is not Role.site]
        _place_demo_data(plan, out, demo_data, servers)
    op = operator_kit(plan, operator, addresses, ca_dir=ca_label)
    folder = out / op.folder
    _common_files(plan, ca, folder)
    write_toml(folder / layout.OPERATOR_CONFIG, _operator_config(op))
    _script(folder, op)
    write_atomic(folder / layout.README, operator_readme(ctx, op).encode())
    every = (*kits, op)
    write_atomic(out / layout.INDEX, index_readme(ctx, every, order).encode())
    manifest = {
        "federation": plan.federation,
        "plan_sha256": plan.sha256,
        "ca_dir": ca_label,
        "ca_in_kits": ca_in_kits,
        "start_order": order,
        "kits": {k.name: k.manifest() for k in every},
    }
    write_atomic(out / layout.MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return Provisioned(out, ca, ca_in_kits, every, tuple(order))
