"""Private-key helpers shared by the CA, CSR and TLS modules."""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)

from fedsov.exceptions import PKIError
from fedsov.pki._files import PRIVATE_MODE, read_bytes, write_atomic

__all__ = [
    "generate_key",
    "load_private_key",
    "private_key_from_pem",
    "public_keys_equal",
    "signing_hash",
    "write_private_key",
]

_SIGNING_KEYS = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    """Write ``key`` as unencrypted PKCS8 PEM, atomically, mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, mode=PRIVATE_MODE)


def load_private_key(path: Path, what: str = "private key") -> CertificateIssuerPrivateKeyTypes:
    """Read an unencrypted PEM private key that can sign; errors name the file."""
    return private_key_from_pem(read_bytes(path, what), f"{what} {path}")


def private_key_from_pem(data: bytes, what: str) -> CertificateIssuerPrivateKeyTypes:
    """Parse an unencrypted PEM private key that can sign; errors start with ``what``."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise PKIError(f"{what}: key is encrypted; fedsov expects an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise PKIError(f"{what}: not a valid PEM private key ({exc})") from None
    if not isinstance(key, _SIGNING_KEYS):
        raise PKIError(f"{what}: unsupported key type {type(key).__name__}")
    return key


def public_keys_equal(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """Whether two public keys are the same key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return a.public_bytes(der, fmt) == b.public_bytes(der, fmt)


def signing_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    """The hash to sign certificates with: SHA-256, or None for EdDSA keys."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def sign_message(key: CertificateIssuerPrivateKeyTypes, data: bytes) -> bytes:
    """``key``'s signature over ``data``: ECDSA-SHA256, RSA PKCS#1 v1.5 with SHA-256,
    or EdDSA (the schemes of every fedsov signature: ledgers, statements, join proofs)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return key.sign(data)
    raise PKIError(f"cannot sign with a {type(key).__name__}")


def verify_message(key: object, signature: bytes, data: bytes) -> None:
    """Raise InvalidSignature unless ``signature`` is ``key``'s (``sign_message``) over ``data``."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        key.verify(signature, data)
    else:
        raise InvalidSignature(f"unsupported key type {type(key).__name__}")
