"""Issue node certificates from CSRs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedsov.exceptions import PKIError
from fedsov.pki._files import write_atomic
from fedsov.pki._keys import signing_hash
from fedsov.pki.ca import CertificateAuthority
from fedsov.pki.csr import SITE_HOSTS_REFUSED, parse_host
from fedsov.pki.identity import NodeIdentity, Role, identity_from_name

__all__ = ["issue_certificate", "issue_for", "sign_csr", "write_certificate"]

_EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_MIN_RSA_BITS = 2048
_BACKDATE = dt.timedelta(minutes=5)


def _check_public_key(key: CertificatePublicKeyTypes) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _EC_CURVES):
            raise PKIError(f"CSR key uses unsupported curve {key.curve.name}")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise PKIError(f"CSR RSA key has {key.key_size} bits, need >= {_MIN_RSA_BITS}")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise PKIError(f"CSR key type {type(key).__name__} is not supported")


def _csr_hosts(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    hosts: list[x509.GeneralName] = []
    for entry in san:
        if isinstance(entry, x509.DNSName):
            hosts.append(parse_host(entry.value))
        elif isinstance(entry, x509.IPAddress):
            hosts.append(entry)
        else:
            raise PKIError(f"CSR SAN entry {entry!r} is not allowed: only DNS names and IPs")
    return hosts


def issue_certificate(
    ca: CertificateAuthority,
    *,
    identity: NodeIdentity,
    public_key: CertificatePublicKeyTypes,
    hosts: Sequence[x509.GeneralName] = (),
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """Build and sign a leaf certificate for ``identity`` (no checks beyond the CA's)."""
    try:
        ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(identity.to_x509_name())
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([*hosts, x509.UniformResourceIdentifier(identity.urn)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca.key, signing_hash(ca.key))
    )


def sign_csr(ca: CertificateAuthority, csr_pem: bytes, *, days: int = 365) -> x509.Certificate:
    """Verify a PEM CSR and issue a leaf certificate for it, valid for ``days`` days.

    The CSR must be self-consistent (signature), name a valid identity of the CA's
    federation, and carry only DNS/IP SAN entries, none for a site (sites never
    serve). The validity never outlives the CA.
    """
    if days < 1:
        raise PKIError(f"certificate validity must be at least 1 day, got {days}")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise PKIError(f"cannot parse PEM CSR: {exc}") from None
    if not csr.is_signature_valid:
        raise PKIError("CSR signature is invalid (tampered with, or not signed by its key)")
    identity = identity_from_name(csr.subject, source="CSR")
    return issue_for(ca, identity, csr.public_key(), _csr_hosts(csr), days=days)


def issue_for(
    ca: CertificateAuthority,
    identity: NodeIdentity,
    public_key: CertificatePublicKeyTypes,
    hosts: Sequence[x509.GeneralName],
    *,
    days: int = 365,
) -> x509.Certificate:
    """A leaf certificate for ``identity`` and ``public_key`` (what a verified CSR says),
    valid for ``days`` days but never past the CA: the identity must be of the CA's
    federation, the key of a supported kind, and a site names no host."""
    if days < 1:
        raise PKIError(f"certificate validity must be at least 1 day, got {days}")
    if identity.federation != ca.federation:
        raise PKIError(
            f"CSR for {identity.name!r} is for federation {identity.federation!r}, "
            f"but this CA serves {ca.federation!r}"
        )
    _check_public_key(public_key)
    if hosts and identity.role is Role.site:
        names = ", ".join(str(h.value) for h in hosts)
        raise PKIError(f"CSR for site {identity.name!r} names hosts {names}: {SITE_HOSTS_REFUSED}")
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    if not_after <= now:
        raise PKIError("the CA certificate has expired; cannot issue certificates")
    return issue_certificate(
        ca,
        identity=identity,
        public_key=public_key,
        hosts=hosts,
        not_before=now - _BACKDATE,
        not_after=not_after,
    )


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    """Write ``cert`` as PEM to ``path``, atomically."""
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))
