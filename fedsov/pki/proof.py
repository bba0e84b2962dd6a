"""The join proof: an upstream proves that it holds the key of its TLS certificate.

gRPC gives a client no view of the server's certificate, so the server sends it in
its join answer with a signature, by that certificate's key, over a canonical
message binding the client's fresh nonce, the SHA-256 of the client certificate the
server saw in mTLS, and the federation. A relay that forwards a join to the real
upstream gets back a proof bound to its own certificate, not to the client's.
"""

from __future__ import annotations

import datetime as dt
import secrets
import struct

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from fedsov.exceptions import PKIError
from fedsov.pki._keys import private_key_from_pem, sign_message, verify_message
from fedsov.pki.identity import NodeIdentity, identity_from_certificate
from fedsov.pki.tls import TlsMaterial

__all__ = [
    "JOIN_PROOF_CONTEXT",
    "NONCE_BYTES",
    "JoinProver",
    "join_proof_message",
    "new_nonce",
    "verify_join_proof",
]

JOIN_PROOF_CONTEXT = b"fedsov/v1 join proof"
NONCE_BYTES = 32


def new_nonce() -> bytes:
    """A fresh join nonce from the OS CSPRNG."""
    return secrets.token_bytes(NONCE_BYTES)


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def join_proof_message(*, nonce: bytes, client_certificate_sha256: str, federation: str) -> bytes:
    """The canonical bytes a join proof signs: each part length-prefixed, after a context."""
    try:
        client_digest = bytes.fromhex(client_certificate_sha256)
    except ValueError:
        raise PKIError("join proof: the client certificate SHA-256 is not hex") from None
    return b"".join(
        _field(part)
        for part in (JOIN_PROOF_CONTEXT, nonce, client_digest, federation.encode("utf-8"))
    )


class JoinProver:
    """A server's side of the proof: its certificate (DER) and the key that signs."""

    def __init__(self, tls: TlsMaterial) -> None:
        self._key = private_key_from_pem(tls.key_pem, "join proof: this node's key")
        self.certificate_der = x509.load_pem_x509_certificate(tls.cert_pem).public_bytes(
            serialization.Encoding.DER
        )

    def prove(self, *, nonce: bytes, client_certificate_sha256: str, federation: str) -> bytes:
        """The signature over ``join_proof_message`` of these facts."""
        message = join_proof_message(
            nonce=nonce, client_certificate_sha256=client_certificate_sha256, federation=federation
        )
        return sign_message(self._key, message)


def _chained(cert: x509.Certificate, ca_pem: bytes, now: dt.datetime) -> None:
    try:
        roots = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise PKIError(f"join proof: this node's CA bundle does not parse ({exc})") from None
    verifier = PolicyBuilder().store(Store(roots)).time(now).build_client_verifier()
    try:
        verifier.verify(cert, [])
    except VerificationError as exc:
        raise PKIError(
            "the upstream's certificate does not verify against this node's CA "
            f"(another CA's, expired or not yet valid): {exc}"
        ) from None


def verify_join_proof(
    *,
    certificate_der: bytes,
    proof: bytes,
    nonce: bytes,
    client_certificate_sha256: str,
    federation: str,
    ca_pem: bytes,
    now: dt.datetime | None = None,
) -> NodeIdentity:
    """The upstream's identity, once its proof holds; PKIError saying what failed otherwise.

    Checks: the certificate chains to ``ca_pem`` and is valid ``now``; its identity
    parses and is of ``federation``; ``proof`` is its key's signature over this join's
    ``nonce``, this node's certificate digest and ``federation``.
    """
    if not certificate_der or not proof:
        raise PKIError(
            "the upstream sent no join proof (its certificate and signature): it runs an "
            "older fedsov or is no fedsov upstream; upgrade it, or check the address"
        )
    try:
        cert = x509.load_der_x509_certificate(certificate_der)
    except ValueError as exc:
        raise PKIError(f"the upstream's certificate does not parse: {exc}") from None
    _chained(cert, ca_pem, now or dt.datetime.now(dt.UTC))
    identity = identity_from_certificate(cert)
    if identity.federation != federation:
        raise PKIError(
            f"the upstream's certificate ({identity.name}) is for federation "
            f"{identity.federation!r}, this node is in {federation!r}"
        )
    message = join_proof_message(
        nonce=nonce, client_certificate_sha256=client_certificate_sha256, federation=federation
    )
    try:
        verify_message(cert.public_key(), proof, message)
    except InvalidSignature:
        raise PKIError(
            f"the join proof of {identity.name!r} does not verify: it was not signed by its "
            "certificate's key for this join and this node's certificate (a relay, or tampered)"
        ) from None
    return identity
