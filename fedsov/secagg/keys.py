"""Key agreement (X25519 + HKDF-SHA256), sealed shares (AES-256-GCM), commitments.

Every key is ephemeral: a site makes new ones for each secure round.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedsov.exceptions import ProtocolError

__all__ = [
    "KEY_BYTES",
    "agree",
    "commit",
    "open_sealed",
    "pair_info",
    "private_bytes",
    "public_bytes",
    "seal",
    "share_info",
]

KEY_BYTES = 32
_NONCE_BYTES = 12
_VERSION = b"fedsov-secagg-v1"


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def agree(key: X25519PrivateKey, peer_public: bytes, *, info: bytes) -> bytes:
    """A 32-byte key both ends derive: HKDF-SHA256 of the X25519 shared secret."""
    if len(peer_public) != KEY_BYTES:
        raise ProtocolError(f"an X25519 public key has {KEY_BYTES} bytes, got {len(peer_public)}")
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # a low-order point: no shared secret
        raise ProtocolError(f"unusable X25519 public key: {exc}") from None
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=_VERSION + info).derive(shared)


def pair_info(round: int, a: str, b: str) -> bytes:
    """HKDF info of the pairwise mask seed of sites ``a`` and ``b`` in ``round``."""
    low, high = sorted((a, b))
    return f"|mask|{round}|{low}|{high}".encode()


def share_info(round: int, a: str, b: str) -> bytes:
    """HKDF info of the key that seals shares between ``a`` and ``b`` in ``round``."""
    low, high = sorted((a, b))
    return f"|seal|{round}|{low}|{high}".encode()


def seal(key: bytes, plaintext: bytes, *, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _VERSION + aad)


def open_sealed(key: bytes, sealed: bytes, *, aad: bytes) -> bytes:
    """The plaintext of ``sealed``; ProtocolError if it was not sealed for ``aad``."""
    nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, body, _VERSION + aad)
    except (InvalidTag, ValueError):
        raise ProtocolError("a sealed share does not open (forged, altered or misrouted)") from None


def commit(seed: bytes, *, round: int, site: str) -> bytes:
    """SHA-256 commitment to a self-mask seed, checked when the seed is rebuilt."""
    return hashlib.sha256(_VERSION + f"|commit|{round}|{site}|".encode() + seed).digest()
