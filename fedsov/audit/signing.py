"""Signing ledger records with a node's private key, and checking those signatures.

EC keys sign with ECDSA-SHA256 (fedsov's node keys are P-256), RSA keys with
PKCS#1 v1.5 SHA-256, Ed25519 and Ed448 keys with EdDSA. A record carries its
signer's public key (base64 DER SubjectPublicKeyInfo) so that verification can say
*which* key signed a record that the node's certificate does not vouch for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from fedsov.exceptions import AuditError, PKIError
from fedsov.pki._files import read_bytes
from fedsov.pki._keys import load_private_key, sign_message, verify_message

__all__ = [
    "Signer",
    "decode_public_key",
    "encode_public_key",
    "fingerprint",
    "load_certificates",
    "verify_signature",
]

SigningKey = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
VerifyingKey = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
_VERIFYING = (
    ec.EllipticCurvePublicKey,
    rsa.RSAPublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


def encode_public_key(key: PublicKeyTypes) -> str:
    """Base64 of the key's DER SubjectPublicKeyInfo: the ``key`` field of a record."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def decode_public_key(text: str) -> VerifyingKey:
    """The public key a record names; ValueError when it is not one that can verify."""
    try:
        der = base64.b64decode(text.encode(), validate=True)
        key = serialization.load_der_public_key(der)
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a DER public key ({exc})") from None
    if not isinstance(key, _VERIFYING):
        raise ValueError(f"unsupported key type {type(key).__name__}")
    return key


def fingerprint(key: PublicKeyTypes) -> str:
    """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def verify_signature(key: PublicKeyTypes, signature: str, data: bytes) -> bool:
    """Whether ``signature`` (base64) is ``key``'s signature over ``data``."""
    try:
        verify_message(key, base64.b64decode(signature.encode(), validate=True), data)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


class Signer:
    """A node's private key, signing ledger records."""

    def __init__(self, private_key: PrivateKeyTypes) -> None:
        if not isinstance(
            private_key,
            ec.EllipticCurvePrivateKey
            | rsa.RSAPrivateKey
            | ed25519.Ed25519PrivateKey
            | ed448.Ed448PrivateKey,
        ):
            raise AuditError(f"cannot sign audit records with a {type(private_key).__name__}")
        self._key: SigningKey = private_key
        self.public_key: VerifyingKey = private_key.public_key()
        self.key_field = encode_public_key(self.public_key)
        self.fingerprint = fingerprint(self.public_key)

    @classmethod
    def load(cls, path: Path) -> Signer:
        """Read an unencrypted PEM private key (PKIError names the file)."""
        return cls(load_private_key(path))

    def sign(self, data: bytes) -> str:
        """Base64 signature over ``data``."""
        return base64.b64encode(sign_message(self._key, data)).decode()


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every PEM certificate in ``path``; PKIError names the file when there is none."""
    data = read_bytes(path, "certificate")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PKIError(f"certificate {path}: not a valid PEM certificate ({exc})") from None
    return certs
