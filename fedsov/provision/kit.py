"""What each kit is, before anything is written: who runs it, where it listens and dials,
and the commands its holder and the operator run. The READMEs and kits.json say the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedsov.pki.identity import Role
from fedsov.policy.plan import Plan, PlanNode, Tier
from fedsov.provision import commands, layout
from fedsov.provision.addresses import Addresses

__all__ = ["Kit", "node_kit", "operator_kit", "start_order"]


@dataclass(frozen=True)
class Kit:
    """One kit folder: a node's, or the consortium operator's."""

    name: str
    role: Role
    jurisdiction: str
    upstream: str | None  # the node it dials (the operator: the coordinator)
    listen: str | None  # host:port it binds (servers)
    dials: str | None  # host:port it dials
    csr: tuple[str, ...]  # run in the kit: makes the key and CSR there
    sign: tuple[str, ...]  # run by the operator in the kits folder: issues the certificate
    start: tuple[str, ...] | None  # run in the kit (None: the operator kit starts no node)

    @property
    def folder(self) -> str:
        """The kit's folder, relative to the kits folder."""
        return self.name

    @property
    def files(self) -> dict[str, str]:
        """The key, CSR and certificate the kit's commands make, relative to the kit."""
        return {
            "key": layout.key_file(self.name),
            "csr": layout.csr_file(self.name),
            "cert": layout.cert_file(self.name),
        }

    def manifest(self) -> dict[str, Any]:
        """The kit as kits.json lists it."""
        return {
            "role": self.role.value,
            "jurisdiction": self.jurisdiction,
            "folder": self.folder,
            "upstream": self.upstream,
            "listen": self.listen,
            "dials": self.dials,
            **self.files,
            "request_certificate": ["sh", layout.SCRIPT],
            "csr_command": list(self.csr),
            "sign_command": list(self.sign),
            "start_command": list(self.start) if self.start is not None else None,
        }


def node_kit(plan: Plan, node: PlanNode, addresses: Addresses, *, ca_dir: str) -> Kit:
    """The kit of plan node ``node``; ``ca_dir`` is the CA folder as the operator names it."""
    role = plan.role_of(node.tier)
    csr = commands.csr_argv(
        node.name,
        role=role,
        jurisdiction=node.jurisdiction,
        federation=plan.federation,
        hosts=addresses.cert_hosts(node),
    )
    return Kit(
        name=node.name,
        role=role,
        jurisdiction=node.jurisdiction,
        upstream=node.upstream,
        listen=addresses.listen(node) if node.tier is not Tier.EDGE else None,
        dials=addresses.upstream(node) if node.upstream is not None else None,
        csr=tuple(csr),
        sign=tuple(commands.sign_argv(ca_dir, node.name, kit=node.name)),
        start=tuple(commands.start_argv(role)),
    )


def operator_kit(plan: Plan, name: str, addresses: Addresses, *, ca_dir: str) -> Kit:
    """The consortium operator's kit: a certificate of role operator, in the
    coordinator's jurisdiction, to read status and stop the federation."""
    top = plan.global_node
    csr = commands.csr_argv(
        name, role=Role.operator, jurisdiction=top.jurisdiction, federation=plan.federation
    )
    return Kit(
        name=name,
        role=Role.operator,
        jurisdiction=top.jurisdiction,
        upstream=top.name,
        listen=None,
        dials=addresses.dial(top),
        csr=tuple(csr),
        sign=tuple(commands.sign_argv(ca_dir, name, kit=name)),
        start=None,
    )


def start_order(plan: Plan) -> list[str]:
    """The plan's nodes upstream first: the coordinator, then each tier below it."""
    order, todo = [], [plan.global_node]
    while todo:
        node = todo.pop(0)
        order.append(node.name)
        todo += [c for c in plan.children(node.name) if c.name not in order]
    return order
