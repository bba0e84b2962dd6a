"""Certificate signing requests: the key is generated where it is used; only the CSR travels."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedsov.exceptions import PKIError
from fedsov.pki._files import write_atomic
from fedsov.pki._keys import generate_key, signing_hash, write_private_key
from fedsov.pki.identity import NodeIdentity, Role

__all__ = ["SITE_HOSTS_REFUSED", "make_csr", "parse_host", "parse_hosts"]

SITE_HOSTS_REFUSED = (
    "sites never listen, so a site certificate carries no host name (one would let the "
    "site pass a TLS host check as a server); drop --host, or issue a coordinator or "
    "aggregator certificate for a node that serves"
)

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def parse_host(host: str) -> x509.GeneralName:
    """A SAN entry for ``host``: an IP literal (v4 or v6) or a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if len(host) > 253 or not _DNS_RE.fullmatch(host):
        raise PKIError(f"invalid host {host!r}: expected a DNS name or an IP address")
    return x509.DNSName(host.lower())


def parse_hosts(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """SAN entries for ``hosts``, duplicates removed, order kept."""
    out: list[x509.GeneralName] = []
    for host in hosts:
        entry = parse_host(host)
        if entry not in out:
            out.append(entry)
    return out


def make_csr(
    out_dir: Path,
    *,
    name: str,
    role: Role,
    jurisdiction: str,
    federation: str,
    hosts: Sequence[str] = (),
    force: bool = False,
) -> tuple[Path, Path]:
    """Generate ``<name>.key`` (0600) and ``<name>.csr.pem`` in ``out_dir``.

    ``hosts`` (DNS names or IP literals) go in the CSR's SAN. Returns (key path, CSR path).
    Refuses to replace an existing key unless ``force``.
    """
    identity = NodeIdentity.create(name, role, jurisdiction, federation)
    if hosts and identity.role is Role.site:
        raise PKIError(f"--host {', '.join(hosts)} for site {name!r}: {SITE_HOSTS_REFUSED}")
    sans = parse_hosts(hosts)
    key_path, csr_path = out_dir / f"{name}.key", out_dir / f"{name}.csr.pem"
    if key_path.exists() and not force:
        raise PKIError(f"private key {key_path} already exists; use force to replace it")
    key = generate_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(identity.to_x509_name())
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, signing_hash(key))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private_key(key_path, key)
    write_atomic(csr_path, csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path
