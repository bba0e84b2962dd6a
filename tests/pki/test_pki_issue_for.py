"""``issue_for``: what ``sign_csr`` checks of a verified CSR, for a key made here; and
``build_pki`` issuing a federation's certificates through it, without CSR files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from fedsov.exceptions import PKIError
from fedsov.fileio import PUBLIC_MODE
from fedsov.pki import NodeIdentity, NodeSpec, Role, build_pki, init_ca, load_ca
from fedsov.pki._keys import generate_key
from fedsov.pki.csr import parse_hosts
from fedsov.pki.sign import issue_for


def test_issue_for_refuses_what_sign_csr_refuses(tmp_path: Path) -> None:
    init_ca(tmp_path, federation="fed")
    ca = load_ca(tmp_path)
    key = generate_key().public_key()
    other = NodeIdentity.create("a", Role.site, "EU", "elsewhere")
    with pytest.raises(PKIError, match="for federation 'elsewhere', but this CA serves 'fed'"):
        issue_for(ca, other, key, [])
    site = NodeIdentity.create("s", Role.site, "EU", "fed")
    with pytest.raises(PKIError, match="names hosts localhost: sites never listen"):
        issue_for(ca, site, key, parse_hosts(["localhost"]))
    with pytest.raises(PKIError, match="at least 1 day"):
        issue_for(ca, site, key, [], days=0)
    cert = issue_for(ca, site, key, [], days=2)
    assert cert.issuer == ca.cert.subject
    assert cert.not_valid_after_utc <= ca.cert.not_valid_after_utc


def test_build_pki_writes_keys_and_certificates_only(tmp_path: Path) -> None:
    nodes = [
        NodeSpec("hub", Role.coordinator, "EU", ("localhost", "127.0.0.1")),
        *(NodeSpec(f"s-{i}", Role.site, "IN") for i in range(20)),
    ]
    paths = build_pki(tmp_path, federation="fed", nodes=nodes)
    assert not list(tmp_path.rglob("*.csr.pem")) and not list(tmp_path.rglob("*.tmp"))
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    for spec in nodes:
        p = paths[spec.name]
        assert stat.S_IMODE(p.key.stat().st_mode) == 0o600
        assert stat.S_IMODE(p.cert.stat().st_mode) == PUBLIC_MODE
        cert = x509.load_pem_x509_certificate(p.cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert p.ca.read_bytes() == (tmp_path / "ca.pem").read_bytes()
    san = x509.load_pem_x509_certificate(paths["hub"].cert.read_bytes()).extensions
    names = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)


def test_build_pki_refuses_a_site_with_hosts(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="hosts localhost for site 's'"):
        build_pki(
            tmp_path, federation="fed", nodes=[NodeSpec("s", Role.site, "EU", ("localhost",))]
        )
