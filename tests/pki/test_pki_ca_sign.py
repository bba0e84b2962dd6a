"""CA creation/loading, CSRs and signing."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from fedsov.exceptions import PKIError
from fedsov.pki import (
    CertificateAuthority,
    NodeIdentity,
    Role,
    identity_from_certificate,
    init_ca,
    load_ca,
    make_csr,
    sign_csr,
)

FEDERATION = "acme-health"  # as in conftest.py


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_ca_writes_private_key_0600_and_ca_cert(ca_dir: Path) -> None:
    assert _mode(ca_dir / "ca.key") == 0o600
    assert (ca_dir / "ca.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.issuer == cert.subject


def test_no_temp_files_left_behind(ca_dir: Path) -> None:
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.key", "ca.pem"]


def test_init_ca_refuses_to_overwrite(ca_dir: Path) -> None:
    before = (ca_dir / "ca.key").read_bytes()
    with pytest.raises(PKIError, match="already exists"):
        init_ca(ca_dir, federation=FEDERATION)
    assert (ca_dir / "ca.key").read_bytes() == before
    init_ca(ca_dir, federation=FEDERATION, force=True)
    assert (ca_dir / "ca.key").read_bytes() != before
    assert load_ca(ca_dir).federation == FEDERATION


def test_init_ca_rejects_bad_federation(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="invalid federation name"):
        init_ca(tmp_path, federation="Bad Name")
    assert not (tmp_path / "ca.key").exists()


def test_load_ca_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match=r"CA certificate .*ca\.pem: file not found"):
        load_ca(tmp_path)


def test_load_ca_bad_pem(ca_dir: Path) -> None:
    (ca_dir / "ca.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(PKIError, match=r"CA key .*ca\.key: not a valid PEM private key"):
        load_ca(ca_dir)


def test_load_ca_key_mismatch(ca_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    init_ca(other, federation=FEDERATION)
    (ca_dir / "ca.key").write_bytes((other / "ca.key").read_bytes())
    with pytest.raises(PKIError, match="does not match"):
        load_ca(ca_dir)


def test_csr_key_is_local_and_0600(tmp_path: Path) -> None:
    key, csr = make_csr(
        tmp_path, name="agg-1", role=Role.aggregator, jurisdiction="IN", federation="f"
    )
    assert key == tmp_path / "agg-1.key" and csr == tmp_path / "agg-1.csr.pem"
    assert _mode(key) == 0o600
    req = x509.load_pem_x509_csr(csr.read_bytes())
    assert req.is_signature_valid
    assert b"PRIVATE" not in csr.read_bytes()
    with pytest.raises(PKIError, match="already exists"):
        make_csr(tmp_path, name="agg-1", role=Role.aggregator, jurisdiction="IN", federation="f")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad"}, "invalid node name"),
        ({"jurisdiction": "europe"}, "invalid jurisdiction"),
        ({"role": "boss"}, "invalid role"),
        ({"hosts": ("bad host",), "role": Role.aggregator}, "invalid host"),
        ({"hosts": ("localhost",)}, "sites never listen"),
    ],
)
def test_make_csr_validates(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "name": "s",
        "role": Role.site,
        "jurisdiction": "EU",
        "federation": "f",
        **kwargs,
    }
    with pytest.raises(PKIError, match=message):
        make_csr(tmp_path, **args)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_signed_leaf_has_expected_extensions(node_cert: x509.Certificate) -> None:
    cert = node_cert
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:fedsov:{FEDERATION}:aggregator:EU:agg-eu-1"
    ]
    cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert identity_from_certificate(cert) == NodeIdentity(
        "agg-eu-1", Role.aggregator, "EU", FEDERATION
    )
    age = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 365 * 86400 <= age.total_seconds() <= 365 * 86400 + 301


def test_serials_are_random(ca: CertificateAuthority, tmp_path: Path) -> None:
    _, csr = make_csr(tmp_path, name="s", role=Role.site, jurisdiction="EU", federation=FEDERATION)
    a = sign_csr(ca, csr.read_bytes())
    b = sign_csr(ca, csr.read_bytes())
    assert a.serial_number != b.serial_number


def test_csr_from_other_federation_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    _, csr = make_csr(tmp_path, name="s", role=Role.site, jurisdiction="EU", federation="rival")
    with pytest.raises(PKIError, match=r"federation 'rival'.*serves 'acme-health'"):
        sign_csr(ca, csr.read_bytes())


def _csr_with(name: x509.Name, sans: list[x509.GeneralName] | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_csr_with_bad_jurisdiction_refused(ca: CertificateAuthority) -> None:
    name = NodeIdentity("s", Role.site, "eu", FEDERATION).to_x509_name()
    with pytest.raises(PKIError, match="CSR: invalid jurisdiction 'eu'"):
        sign_csr(ca, _csr_with(name))


def test_csr_with_bad_role_refused(ca: CertificateAuthority) -> None:
    name = NodeIdentity("s", "root", "EU", FEDERATION).to_x509_name()  # type: ignore[arg-type]
    with pytest.raises(PKIError, match="CSR: invalid role 'root'"):
        sign_csr(ca, _csr_with(name))


def test_csr_with_email_san_refused(ca: CertificateAuthority) -> None:
    name = NodeIdentity("s", Role.site, "EU", FEDERATION).to_x509_name()
    with pytest.raises(PKIError, match="only DNS names and IPs"):
        sign_csr(ca, _csr_with(name, [x509.RFC822Name("a@b.example")]))


def test_tampered_csr_refused(ca: CertificateAuthority) -> None:
    good = x509.load_pem_x509_csr(
        _csr_with(NodeIdentity("s", Role.site, "EU", FEDERATION).to_x509_name())
    )
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PKIError, match="signature is invalid"):
        sign_csr(ca, pem)


def test_sign_rejects_non_pem_and_bad_days(ca: CertificateAuthority) -> None:
    with pytest.raises(PKIError, match="cannot parse PEM CSR"):
        sign_csr(ca, b"not a csr")
    csr = _csr_with(NodeIdentity("s", Role.site, "EU", FEDERATION).to_x509_name())
    with pytest.raises(PKIError, match="at least 1 day"):
        sign_csr(ca, csr, days=0)


def test_leaf_never_outlives_ca(tmp_path: Path) -> None:
    init_ca(tmp_path, federation=FEDERATION, days=10)
    ca = load_ca(tmp_path)
    csr = _csr_with(NodeIdentity("s", Role.site, "EU", FEDERATION).to_x509_name())
    cert = sign_csr(ca, csr, days=365)
    assert cert.not_valid_after_utc == ca.cert.not_valid_after_utc


@pytest.mark.parametrize(
    "host", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
)
def test_site_csr_with_a_host_is_refused(ca: CertificateAuthority, host: x509.GeneralName) -> None:
    """A site certificate with a host name would pass a participant's TLS host check."""
    csr = _csr_with(NodeIdentity("s", Role.site, "EU", FEDERATION).to_x509_name(), [host])
    with pytest.raises(PKIError, match=r"CSR for site 's' names hosts .*sites never listen"):
        sign_csr(ca, csr)


def test_server_csr_with_a_host_is_signed(ca: CertificateAuthority) -> None:
    name = NodeIdentity("agg", Role.aggregator, "EU", FEDERATION).to_x509_name()
    cert = sign_csr(ca, _csr_with(name, [x509.DNSName("agg.example")]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["agg.example"]
