"""The federation certificate authority: create it once, load it to sign CSRs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from fedsov.exceptions import PKIError
from fedsov.pki._files import read_bytes, write_atomic
from fedsov.pki._keys import (
    generate_key,
    load_private_key,
    public_keys_equal,
    signing_hash,
    write_private_key,
)
from fedsov.pki.identity import validate_name

__all__ = ["CA_CERT_FILE", "CA_KEY_FILE", "CertificateAuthority", "init_ca", "load_ca"]

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.pem"


@dataclass(frozen=True)
class CertificateAuthority:
    """A loaded CA: its certificate, its private key and the federation it serves."""

    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes
    federation: str


def init_ca(directory: Path, *, federation: str, days: int = 3650, force: bool = False) -> Path:
    """Create ``ca.key`` (0600) and ``ca.pem`` in ``directory``; returns the ``ca.pem`` path.

    Refuses to replace an existing CA unless ``force``.
    """
    validate_name(federation, what="federation name")
    if days < 1:
        raise PKIError(f"CA validity must be at least 1 day, got {days}")
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    existing = [p for p in (key_path, cert_path) if p.exists()]
    if existing and not force:
        raise PKIError(
            f"a CA already exists in {directory} ({', '.join(p.name for p in existing)}); "
            "use force to replace it (every certificate it issued becomes untrusted)"
        )
    key = generate_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
            x509.NameAttribute(NameOID.COMMON_NAME, f"fedsov CA {federation}"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, signing_hash(key))
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_private_key(key_path, key)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def load_ca(directory: Path) -> CertificateAuthority:
    """Load the CA in ``directory``, checking that its key matches its certificate."""
    cert_path = directory / CA_CERT_FILE
    try:
        cert = x509.load_pem_x509_certificate(read_bytes(cert_path, "CA certificate"))
    except ValueError as exc:
        raise PKIError(f"CA certificate {cert_path}: not a valid PEM certificate ({exc})") from None
    key_path = directory / CA_KEY_FILE
    key = load_private_key(key_path, "CA key")
    if not public_keys_equal(key.public_key(), cert.public_key()):
        raise PKIError(f"CA key {key_path} does not match CA certificate {cert_path}")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise PKIError(f"CA certificate {cert_path} is not a CA certificate (BasicConstraints)")
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(orgs) != 1 or not isinstance(orgs[0].value, str):
        raise PKIError(f"CA certificate {cert_path}: subject needs exactly one O (federation)")
    try:
        federation = validate_name(orgs[0].value, what="federation name")
    except PKIError as exc:
        raise PKIError(f"CA certificate {cert_path}: {exc}") from None
    return CertificateAuthority(cert=cert, key=key, federation=federation)
