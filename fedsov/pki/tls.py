"""Load and check the certificate, key and CA a node needs for mutual TLS."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from fedsov.exceptions import PKIError
from fedsov.pki._files import read_bytes
from fedsov.pki._keys import load_private_key, public_keys_equal
from fedsov.pki.identity import NodeIdentity, identity_from_certificate

__all__ = ["TlsMaterial", "load_tls_material"]


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes ready for grpc credentials, plus the identity the certificate carries."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    identity: NodeIdentity


def _load_certs(path: Path, what: str) -> tuple[bytes, list[x509.Certificate]]:
    data = read_bytes(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PKIError(f"{what} {path}: not a valid PEM certificate ({exc})") from None
    return data, certs


def _check_validity(cert: x509.Certificate, path: Path, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise PKIError(f"certificate {path} is not valid yet (from {cert.not_valid_before_utc})")
    if now > cert.not_valid_after_utc:
        raise PKIError(f"certificate {path} expired on {cert.not_valid_after_utc}")


def _find_issuer(
    leaf: x509.Certificate, roots: list[x509.Certificate], cert: Path, ca: Path
) -> x509.Certificate:
    for root in roots:
        try:
            leaf.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return root
    raise PKIError(f"certificate {cert} was not issued by the CA in {ca}")


def load_tls_material(*, cert: Path, key: Path, ca: Path) -> TlsMaterial:
    """Read and check a node's TLS files; every error names the file and the problem.

    Checks: files readable, PEM parses, key matches certificate, certificate signed by
    the CA and currently valid, and its identity is well formed and of the CA's federation.
    """
    cert_pem, leaves = _load_certs(cert, "certificate")
    if len(leaves) != 1:
        raise PKIError(f"certificate {cert}: expected exactly 1 certificate, found {len(leaves)}")
    leaf = leaves[0]
    ca_pem, roots = _load_certs(ca, "CA certificate")
    private_key = load_private_key(key)
    if not public_keys_equal(private_key.public_key(), leaf.public_key()):
        raise PKIError(f"private key {key} does not match certificate {cert}")
    key_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    now = dt.datetime.now(dt.UTC)
    _check_validity(leaf, cert, now)
    issuer = _find_issuer(leaf, roots, cert, ca)
    if now > issuer.not_valid_after_utc:
        raise PKIError(f"CA certificate {ca} expired on {issuer.not_valid_after_utc}")
    verifier = PolicyBuilder().store(Store(roots)).time(now).build_client_verifier()
    try:
        verifier.verify(leaf, [])
    except VerificationError as exc:
        raise PKIError(f"certificate {cert} does not verify against CA {ca}: {exc}") from None
    try:
        identity = identity_from_certificate(leaf)
    except PKIError as exc:
        raise PKIError(f"certificate {cert}: {exc}") from None
    orgs = issuer.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if orgs and orgs[0].value != identity.federation:
        raise PKIError(
            f"certificate {cert} is for federation {identity.federation!r}, "
            f"but CA {ca} serves {orgs[0].value!r}"
        )
    return TlsMaterial(cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem, identity=identity)
