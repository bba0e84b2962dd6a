"""Node identities and how they are encoded in X.509 certificates.

Subject: CN = node name, O = federation, OU = role, plus ``JURISDICTION_OID`` =
jurisdiction. The same facts are repeated as the SAN URI
``urn:fedsov:<federation>:<role>:<jurisdiction>:<name>``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from fedsov.exceptions import PKIError

__all__ = [
    "JURISDICTION_OID",
    "URN_PREFIX",
    "NodeIdentity",
    "Role",
    "identity_from_certificate",
    "identity_from_name",
    "identity_from_pem",
    "parse_role",
    "validate_jurisdiction",
    "validate_name",
]

# The 2.25 arc (ITU-T X.667 / ISO/IEC 9834-8) turns any UUID into an OID: UUIDs are
# unique by construction, so no registration with any authority is needed. This one
# was generated once with uuid.uuid4() and must never change (it is in issued certs).
JURISDICTION_OID = x509.ObjectIdentifier("2.25.330016470749706129998525611360308516747")

URN_PREFIX = "urn:fedsov:"

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_JURISDICTION_RE = re.compile(r"[A-Z]{2,8}")


class Role(StrEnum):
    """What a node does in the federation."""

    coordinator = "coordinator"
    aggregator = "aggregator"
    site = "site"
    operator = "operator"  # reads a node's status and stops it; never takes part


@dataclass(frozen=True)
class NodeIdentity:
    """Who a certificate says a node is."""

    name: str
    role: Role
    jurisdiction: str
    federation: str
    certificate_der: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def certificate_sha256(self) -> str | None:
        """Hex SHA-256 of the certificate this identity was read from; None without one."""
        if self.certificate_der is None:
            return None
        return hashlib.sha256(self.certificate_der).hexdigest()

    @classmethod
    def create(
        cls, name: str, role: Role | str, jurisdiction: str, federation: str
    ) -> NodeIdentity:
        """Build an identity, validating every field (raises PKIError)."""
        return cls(
            name=validate_name(name),
            role=parse_role(role),
            jurisdiction=validate_jurisdiction(jurisdiction),
            federation=validate_name(federation, what="federation name"),
        )

    @property
    def urn(self) -> str:
        """The SAN URI that carries this identity."""
        return f"{URN_PREFIX}{self.federation}:{self.role}:{self.jurisdiction}:{self.name}"

    def to_x509_name(self) -> x509.Name:
        """The certificate subject for this identity."""
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.federation),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, str(self.role)),
                x509.NameAttribute(JURISDICTION_OID, self.jurisdiction),
                x509.NameAttribute(NameOID.COMMON_NAME, self.name),
            ]
        )


def validate_name(value: str, *, what: str = "node name") -> str:
    """Return ``value`` if it is a valid node (or federation) name, else raise PKIError."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise PKIError(
            f"invalid {what} {value!r}: use 1-63 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return value


def validate_jurisdiction(value: str) -> str:
    """Return ``value`` if it is a valid jurisdiction code (e.g. EU, IN, US), else raise."""
    if not isinstance(value, str) or not _JURISDICTION_RE.fullmatch(value):
        raise PKIError(
            f"invalid jurisdiction {value!r}: use 2-8 uppercase letters A-Z, e.g. EU, IN, US"
        )
    return value


def parse_role(value: Role | str) -> Role:
    """Return the Role named by ``value``, else raise PKIError listing the valid roles."""
    try:
        return Role(value)
    except ValueError:
        valid = ", ".join(r.value for r in Role)
        raise PKIError(f"invalid role {value!r}: expected one of {valid}") from None


def _single(name: x509.Name, oid: x509.ObjectIdentifier, label: str, source: str) -> str:
    attrs = name.get_attributes_for_oid(oid)
    if not attrs:
        raise PKIError(f"{source} has no {label} in its subject")
    if len(attrs) > 1:
        raise PKIError(f"{source} has {len(attrs)} {label} attributes in its subject, expected 1")
    value = attrs[0].value
    if not isinstance(value, str):
        raise PKIError(f"{source}: {label} is not a string")
    return value


def identity_from_name(name: x509.Name, *, source: str = "certificate") -> NodeIdentity:
    """Read and validate a NodeIdentity from a certificate or CSR subject."""
    try:
        return NodeIdentity.create(
            name=_single(name, NameOID.COMMON_NAME, "CN (node name)", source),
            role=_single(name, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)", source),
            jurisdiction=_single(
                name, JURISDICTION_OID, f"jurisdiction ({JURISDICTION_OID.dotted_string})", source
            ),
            federation=_single(name, NameOID.ORGANIZATION_NAME, "O (federation)", source),
        )
    except PKIError as exc:
        if str(exc).startswith(source):
            raise
        raise PKIError(f"{source}: {exc}") from None


def identity_from_certificate(cert: x509.Certificate) -> NodeIdentity:
    """The identity in ``cert``'s subject; a fedsov SAN URI, if present, must agree with it."""
    identity = replace(
        identity_from_name(cert.subject),
        certificate_der=cert.public_bytes(serialization.Encoding.DER),
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return identity
    except ValueError as exc:
        raise PKIError(f"certificate has a malformed extension: {exc}") from exc
    urns = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(URN_PREFIX)
    ]
    for urn in urns:
        if urn != identity.urn:
            raise PKIError(
                f"certificate SAN URI {urn!r} disagrees with its subject ({identity.urn!r})"
            )
    return identity


def identity_from_pem(pem: bytes) -> NodeIdentity:
    """Parse a PEM certificate and return its identity."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise PKIError(f"cannot parse PEM certificate: {exc}") from exc
    return identity_from_certificate(cert)
