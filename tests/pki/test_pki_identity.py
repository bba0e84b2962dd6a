"""Identity encoding, parsing and validation."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fedsov.exceptions import PKIError
from fedsov.pki import (
    JURISDICTION_OID,
    NodeIdentity,
    Role,
    identity_from_certificate,
    identity_from_pem,
    validate_jurisdiction,
    validate_name,
)


def _self_signed(name: x509.Name, sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_oid_is_under_uuid_arc() -> None:
    assert re.fullmatch(r"2\.25\.\d{30,39}", JURISDICTION_OID.dotted_string)


def test_role_values() -> None:
    assert [r.value for r in Role] == ["coordinator", "aggregator", "site", "operator"]
    assert str(Role.aggregator) == "aggregator"


def test_identity_round_trip_through_subject_and_urn() -> None:
    ident = NodeIdentity.create("agg.eu-1", "aggregator", "EU", "fed")
    cert = _self_signed(ident.to_x509_name(), [x509.UniformResourceIdentifier(ident.urn)])
    assert ident.urn == "urn:fedsov:fed:aggregator:EU:agg.eu-1"
    assert identity_from_certificate(cert) == ident
    assert cert.subject.get_attributes_for_oid(JURISDICTION_OID)[0].value == "EU"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        "aggregator"
    )


@pytest.mark.parametrize("name", ["a", "site-1", "x" * 63, "n0.d_e-f"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Site", "-a", ".a", "x" * 64, "a b", "a:b", "a\n", "ü"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(PKIError, match="invalid node name"):
        validate_name(name)


@pytest.mark.parametrize("code", ["EU", "IN", "US", "ABCDEFGH"])
def test_valid_jurisdictions(code: str) -> None:
    assert validate_jurisdiction(code) == code


@pytest.mark.parametrize("code", ["E", "eu", "ABCDEFGHI", "E1", "EU\n", ""])
def test_invalid_jurisdictions(code: str) -> None:
    with pytest.raises(PKIError, match="invalid jurisdiction"):
        validate_jurisdiction(code)


def test_invalid_role() -> None:
    with pytest.raises(PKIError, match=r"invalid role 'boss'.*coordinator, aggregator, site"):
        NodeIdentity.create("a", "boss", "EU", "fed")


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (NameOID.COMMON_NAME, "no CN"),
        (NameOID.ORGANIZATION_NAME, "no O"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "no OU"),
        (JURISDICTION_OID, "no jurisdiction"),
    ],
)
def test_missing_attribute_is_named(drop: x509.ObjectIdentifier, message: str) -> None:
    full = NodeIdentity.create("a", Role.site, "EU", "fed").to_x509_name()
    name = x509.Name([a for a in full if a.oid != drop])
    with pytest.raises(PKIError, match=message):
        identity_from_certificate(_self_signed(name))


def test_bad_role_in_certificate() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "a"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fed"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "king"),
            x509.NameAttribute(JURISDICTION_OID, "EU"),
        ]
    )
    with pytest.raises(PKIError, match="certificate: invalid role 'king'"):
        identity_from_certificate(_self_signed(name))


def test_san_urn_must_agree_with_subject() -> None:
    ident = NodeIdentity.create("a", Role.site, "EU", "fed")
    lie = x509.UniformResourceIdentifier("urn:fedsov:fed:site:US:a")
    with pytest.raises(PKIError, match="disagrees"):
        identity_from_certificate(_self_signed(ident.to_x509_name(), [lie]))


def test_identity_from_pem_rejects_garbage() -> None:
    with pytest.raises(PKIError, match="cannot parse PEM certificate"):
        identity_from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
