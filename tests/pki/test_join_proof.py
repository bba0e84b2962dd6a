"""The join proof: an upstream signs the client's nonce and certificate digest with the
key of its own certificate; the client accepts only a proof for itself, this join and
its CA (issue 13, item 1)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from fedsov.exceptions import PKIError
from fedsov.pki import (
    NodeIdentity,
    NodeSpec,
    Role,
    TlsMaterial,
    identity_from_pem,
    issue_certificate,
    load_ca,
    load_tls_material,
)
from fedsov.pki.proof import JoinProver, join_proof_message, new_nonce, verify_join_proof
from fedsov.pki.throwaway import build_pki

FED = "proof-fed"
SITE_DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsMaterial]:
    root = tmp_path_factory.mktemp("proof")
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("localhost",)),
        NodeSpec("site-1", Role.site, "EU"),
    ]
    paths = build_pki(root / "fed", federation=FED, nodes=nodes)
    other = build_pki(root / "other", federation=FED, nodes=nodes[:1])
    out = {n: load_tls_material(cert=p.cert, key=p.key, ca=p.ca) for n, p in paths.items()}
    out["other-ca"] = load_tls_material(
        cert=other["coordinator"].cert, key=other["coordinator"].key, ca=other["coordinator"].ca
    )
    out["rsa"] = _issued(
        root / "fed", rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    out["ed25519"] = _issued(root / "fed", ed25519.Ed25519PrivateKey.generate())
    return out


def _issued(ca_dir: Path, key: CertificateIssuerPrivateKeyTypes) -> TlsMaterial:
    ca = load_ca(ca_dir)
    now = dt.datetime.now(dt.UTC)
    identity = NodeIdentity("agg-1", Role.aggregator, "EU", FED)
    cert = issue_certificate(
        ca,
        identity=identity,
        public_key=key.public_key(),
        not_before=now - dt.timedelta(minutes=1),
        not_after=now + dt.timedelta(days=1),
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca_pem = ca.cert.public_bytes(serialization.Encoding.PEM)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    return TlsMaterial(cert_pem, key_pem, ca_pem, identity_from_pem(cert_pem))


def _verify(server: TlsMaterial, proof: bytes, nonce: bytes, **overrides: object) -> NodeIdentity:
    args: dict[str, object] = {
        "certificate_der": JoinProver(server).certificate_der,
        "proof": proof,
        "nonce": nonce,
        "client_certificate_sha256": SITE_DIGEST,
        "federation": FED,
        "ca_pem": server.ca_pem,
    }
    return verify_join_proof(**(args | overrides))  # type: ignore[arg-type]


def _prove(server: TlsMaterial, nonce: bytes, digest: str = SITE_DIGEST) -> bytes:
    return JoinProver(server).prove(nonce=nonce, client_certificate_sha256=digest, federation=FED)


@pytest.mark.parametrize("server", ["coordinator", "rsa", "ed25519"])
def test_a_true_proof_gives_the_certificate_identity(
    pki: dict[str, TlsMaterial], server: str
) -> None:
    nonce = new_nonce()
    identity = _verify(pki[server], _prove(pki[server], nonce), nonce)
    assert identity == pki[server].identity
    assert identity.certificate_sha256 == pki[server].identity.certificate_sha256


def test_nonces_are_fresh_and_32_bytes() -> None:
    assert len({new_nonce() for _ in range(16)}) == 16
    assert len(new_nonce()) == 32


def test_message_separates_its_fields() -> None:
    a = join_proof_message(nonce=b"ab", client_certificate_sha256="cd", federation="f")
    b = join_proof_message(nonce=b"a", client_certificate_sha256="cd", federation="f")
    assert a != b and a.startswith(b"\x00\x00\x00\x14fedsov/v1 join proof")


def test_tampered_proof_is_refused(pki: dict[str, TlsMaterial]) -> None:
    nonce = new_nonce()
    proof = bytearray(_prove(pki["coordinator"], nonce))
    proof[-1] ^= 1
    with pytest.raises(PKIError, match="join proof of 'coordinator' does not verify"):
        _verify(pki["coordinator"], bytes(proof), nonce)


def test_proof_for_another_nonce_is_refused(pki: dict[str, TlsMaterial]) -> None:
    proof = _prove(pki["coordinator"], new_nonce())
    with pytest.raises(PKIError, match="does not verify"):
        _verify(pki["coordinator"], proof, new_nonce())


def test_relayed_proof_bound_to_another_client_is_refused(pki: dict[str, TlsMaterial]) -> None:
    """A rogue forwarding our join gets a proof for ITS certificate, not ours."""
    nonce = new_nonce()
    proof = _prove(pki["coordinator"], nonce, digest="cd" * 32)
    with pytest.raises(PKIError, match="a relay, or tampered"):
        _verify(pki["coordinator"], proof, nonce)


def test_certificate_of_another_ca_is_refused(pki: dict[str, TlsMaterial]) -> None:
    nonce = new_nonce()
    proof = _prove(pki["other-ca"], nonce)
    with pytest.raises(PKIError, match="does not verify against this node's CA"):
        _verify(pki["other-ca"], proof, nonce, ca_pem=pki["site-1"].ca_pem)


def test_expired_certificate_is_refused(pki: dict[str, TlsMaterial]) -> None:
    nonce = new_nonce()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    with pytest.raises(PKIError, match="expired or not yet valid"):
        _verify(pki["coordinator"], _prove(pki["coordinator"], nonce), nonce, now=later)


def test_other_federation_is_refused(pki: dict[str, TlsMaterial]) -> None:
    nonce = new_nonce()
    with pytest.raises(PKIError, match="for federation 'proof-fed', this node is in 'rival'"):
        _verify(pki["coordinator"], _prove(pki["coordinator"], nonce), nonce, federation="rival")


def test_site_proof_verifies_but_shows_role_site(pki: dict[str, TlsMaterial]) -> None:
    """A site holding its own key can prove who it is; the role it proves is site, which
    the participant then refuses (tests/participant/test_expected_upstream.py)."""
    nonce = new_nonce()
    identity = _verify(pki["site-1"], _prove(pki["site-1"], nonce), nonce)
    assert identity.role is Role.site


def test_no_proof_is_refused_clearly(pki: dict[str, TlsMaterial]) -> None:
    nonce = new_nonce()
    proof = _prove(pki["coordinator"], nonce)
    with pytest.raises(PKIError, match=r"sent no join proof.*older fedsov"):
        _verify(pki["coordinator"], b"", nonce)
    with pytest.raises(PKIError, match=r"sent no join proof.*older fedsov"):
        _verify(pki["coordinator"], proof, nonce, certificate_der=b"")
