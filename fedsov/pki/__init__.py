"""fedsov PKI: a federation CA, CSRs made where keys live, certificates with jurisdiction."""

from __future__ import annotations

from fedsov.pki.ca import CertificateAuthority, init_ca, load_ca
from fedsov.pki.csr import make_csr
from fedsov.pki.identity import (
    JURISDICTION_OID,
    NodeIdentity,
    Role,
    identity_from_certificate,
    identity_from_pem,
    validate_jurisdiction,
    validate_name,
)
from fedsov.pki.revoke import RevocationList, open_revocation_list, revoke
from fedsov.pki.sign import issue_certificate, sign_csr, write_certificate
from fedsov.pki.throwaway import NodePaths, NodeSpec, build_pki
from fedsov.pki.tls import TlsMaterial, load_tls_material

__all__ = [
    "JURISDICTION_OID",
    "CertificateAuthority",
    "NodeIdentity",
    "NodePaths",
    "NodeSpec",
    "RevocationList",
    "Role",
    "TlsMaterial",
    "build_pki",
    "identity_from_certificate",
    "identity_from_pem",
    "init_ca",
    "issue_certificate",
    "load_ca",
    "load_tls_material",
    "make_csr",
    "open_revocation_list",
    "revoke",
    "sign_csr",
    "validate_jurisdiction",
    "validate_name",
    "write_certificate",
]
