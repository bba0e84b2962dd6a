"""Where each server node of a plan listens, and the address its participants dial.

Server nodes (the coordinator, each regional aggregator) get ports from a base
port, one after another in plan order, unless a port is given for the node. A
participant dials its upstream by the host given for it, else the first of the
plan entry's ``hosts``, else its node name. Base port 0: every server binds a free
port and writes it to its port file; the operator then fills in the real ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fedsov.exceptions import ConfigError, PKIError
from fedsov.pki.csr import parse_hosts
from fedsov.policy.plan import Plan, PlanNode, Tier

__all__ = [
    "DEFAULT_BASE_PORT",
    "DEFAULT_LISTEN",
    "Addresses",
    "Network",
    "parse_assignments",
    "parse_ports",
]

DEFAULT_BASE_PORT = 7443
DEFAULT_LISTEN = "0.0.0.0"  # every interface: a server is reached from other machines
_MAX_PORT = 65535


@dataclass(frozen=True)
class Network:
    """What the operator says about addresses: listen host, ports and hosts per node."""

    listen: str = DEFAULT_LISTEN
    base_port: int = DEFAULT_BASE_PORT
    ports: Mapping[str, int] = field(default_factory=dict)  # node -> port it listens on
    hosts: Mapping[str, str] = field(default_factory=dict)  # node -> host its participants dial


def parse_assignments(values: list[str], *, option: str) -> dict[str, str]:
    """``NODE=VALUE`` strings as a dict; ConfigError naming the option otherwise."""
    out: dict[str, str] = {}
    for value in values:
        node, sep, rest = value.partition("=")
        if not sep or not node or not rest:
            raise ConfigError(f"{option} {value!r}: expected NODE=VALUE, e.g. {option} agg-eu=…")
        if node in out:
            raise ConfigError(f"{option} names {node!r} twice")
        out[node] = rest
    return out


def parse_ports(values: list[str]) -> dict[str, int]:
    """``NODE=PORT`` strings as a dict of ports; ConfigError naming a bad one."""
    out: dict[str, int] = {}
    for node, port in parse_assignments(values, option="--port").items():
        if not port.isdigit():
            raise ConfigError(f"--port {node}={port}: the port must be a number")
        out[node] = int(port)
    return out


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Addresses:
    """The plan's addresses under ``network``; every check is made on construction."""

    def __init__(self, plan: Plan, network: Network) -> None:
        self.plan = plan
        self.network = network
        servers = [n for n in plan.nodes if n.tier is not Tier.EDGE]
        for option, given in (("--port", network.ports), ("--host", network.hosts)):
            for name in given:
                self._check_server(plan, name, option)
        if not 0 <= network.base_port <= _MAX_PORT:
            raise ConfigError(f"--base-port {network.base_port}: a port is 0..{_MAX_PORT}")
        self.ports: dict[str, int] = {}
        for i, node in enumerate(servers):
            port = network.ports.get(node.name)
            if port is None:
                port = network.base_port + i if network.base_port else 0
            if not 0 <= port <= _MAX_PORT:
                raise ConfigError(
                    f"{node.name} would listen on port {port}: a port is 0..{_MAX_PORT}; "
                    "lower --base-port or give --port NODE=PORT"
                )
            self.ports[node.name] = port
        for node in servers:
            try:
                parse_hosts(self.cert_hosts(node))
            except PKIError as exc:
                raise ConfigError(f"node {node.name!r}: {exc}; fix its hosts or --host") from None

    @staticmethod
    def _check_server(plan: Plan, name: str, option: str) -> None:
        node = plan.node(name)
        if node.tier is Tier.EDGE:
            raise ConfigError(
                f"{option} {name}=…: {name!r} is an edge site, and sites never listen; "
                "name a coordinator or aggregator"
            )

    def listen(self, node: PlanNode) -> str:
        """``host:port`` the server ``node`` binds."""
        return _host_port(self.network.listen, self.ports[node.name])

    def dial_host(self, node: PlanNode) -> str:
        """The host the participants of server ``node`` dial."""
        given = self.network.hosts.get(node.name)
        return given or (node.hosts[0] if node.hosts else node.name)

    def dial(self, server: PlanNode) -> str:
        """``host:port`` the participants of ``server`` dial (port 0: still to be filled in)."""
        return _host_port(self.dial_host(server), self.ports[server.name])

    def upstream(self, node: PlanNode) -> str:
        """``host:port`` that ``node`` dials: its upstream's."""
        assert node.upstream is not None
        return self.dial(self.plan.node(node.upstream))

    def cert_hosts(self, node: PlanNode) -> tuple[str, ...]:
        """The DNS names and IPs a server's certificate names: its plan hosts, the host
        given for it, and its node name (the TLS name its participants check)."""
        if node.tier is Tier.EDGE:
            return ()
        given = self.network.hosts.get(node.name)
        return tuple(dict.fromkeys((*node.hosts, *([given] if given else []), node.name)))
