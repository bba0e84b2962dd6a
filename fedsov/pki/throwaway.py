"""A whole throwaway PKI in one call, for simulations and tests (never for deployment)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fedsov.exceptions import PKIError
from fedsov.pki._files import read_bytes, write_atomic
from fedsov.pki.ca import CA_CERT_FILE, init_ca, load_ca
from fedsov.pki.csr import make_csr
from fedsov.pki.identity import Role
from fedsov.pki.sign import sign_csr, write_certificate

__all__ = ["NodePaths", "NodeSpec", "build_pki"]


@dataclass(frozen=True)
class NodeSpec:
    """A node to issue a certificate for; ``hosts`` are the DNS names/IPs it serves on."""

    name: str
    role: Role
    jurisdiction: str
    hosts: Sequence[str] = ()


@dataclass(frozen=True)
class NodePaths:
    """Where a node's certificate, private key and CA certificate were written."""

    cert: Path
    key: Path
    ca: Path


def build_pki(
    directory: Path, *, federation: str, nodes: Sequence[NodeSpec], days: int = 365
) -> dict[str, NodePaths]:
    """Create a CA in ``directory`` and a key + certificate for each node in ``directory/<name>/``.

    Each node directory holds ``<name>.key``, ``<name>.pem`` and a copy of ``ca.pem``.
    Existing material in ``directory`` is replaced: this PKI is disposable.
    """
    names = [n.name for n in nodes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PKIError(f"duplicate node names: {', '.join(dupes)}")
    ca_path = init_ca(directory, federation=federation, days=max(days, 1) + 1, force=True)
    ca = load_ca(directory)
    ca_pem = read_bytes(ca_path, "CA certificate")
    out: dict[str, NodePaths] = {}
    for node in nodes:
        node_dir = directory / node.name
        key, csr = make_csr(
            node_dir,
            name=node.name,
            role=node.role,
            jurisdiction=node.jurisdiction,
            federation=federation,
            hosts=node.hosts,
            force=True,
        )
        cert = node_dir / f"{node.name}.pem"
        write_certificate(cert, sign_csr(ca, csr.read_bytes(), days=days))
        node_ca = node_dir / CA_CERT_FILE
        write_atomic(node_ca, ca_pem)
        out[node.name] = NodePaths(cert=cert, key=key, ca=node_ca)
    return out
