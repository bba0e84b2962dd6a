"""A whole throwaway PKI in one call, for simulations and tests (never for deployment)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedsov.exceptions import PKIError
from fedsov.pki._files import PRIVATE_MODE, PUBLIC_MODE, read_bytes, write_atomic
from fedsov.pki._keys import generate_key
from fedsov.pki.ca import CA_CERT_FILE, init_ca, load_ca
from fedsov.pki.csr import SITE_HOSTS_REFUSED, parse_hosts
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.pki.sign import issue_for

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

    Every certificate is issued with the checks a CSR gets (``issue_for``: identity,
    federation, key type, no host for a site); the key being made here, no CSR is
    written, parsed or verified. Files are written atomically, keys 0600 from their
    first byte, but not fsynced: a throwaway PKI is rebuilt by every run, not kept
    across a power cut, and 1,000 nodes' fsyncs cost seconds.
    """
    dupes = sorted(name for name, n in Counter(n.name for n in nodes).items() if n > 1)
    if dupes:
        raise PKIError(f"duplicate node names: {', '.join(dupes)}")
    ca_path = init_ca(directory, federation=federation, days=max(days, 1) + 1, force=True)
    ca = load_ca(directory)
    ca_pem = read_bytes(ca_path, "CA certificate")
    out: dict[str, NodePaths] = {}
    for node in nodes:
        identity = NodeIdentity.create(node.name, node.role, node.jurisdiction, federation)
        if node.hosts and identity.role is Role.site:
            hosts = ", ".join(node.hosts)
            raise PKIError(f"hosts {hosts} for site {node.name!r}: {SITE_HOSTS_REFUSED}")
        key = generate_key()
        cert = issue_for(ca, identity, key.public_key(), parse_hosts(node.hosts), days=days)
        node_dir = directory / node.name
        node_dir.mkdir(parents=True, exist_ok=True)
        paths = NodePaths(
            cert=node_dir / f"{node.name}.pem",
            key=node_dir / f"{node.name}.key",
            ca=node_dir / CA_CERT_FILE,
        )
        write_atomic(paths.key, _key_pem(key), mode=PRIVATE_MODE, durable=False)
        write_atomic(
            paths.cert,
            cert.public_bytes(serialization.Encoding.PEM),
            mode=PUBLIC_MODE,
            durable=False,
        )
        write_atomic(paths.ca, ca_pem, mode=PUBLIC_MODE, durable=False)
        out[node.name] = paths
    return out


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``key`` as unencrypted PKCS8 PEM, as ``write_private_key`` writes it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
