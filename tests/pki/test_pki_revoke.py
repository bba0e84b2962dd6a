"""Revocation: the CA's CRL (build, idempotence, wrong CA, expiry), its check, the CLI."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from fedsov.cli.pki import app
from fedsov.exceptions import PKIError
from fedsov.pki import NodePaths, init_ca, load_tls_material
from fedsov.pki.revoke import (
    CRL_FILE,
    RevocationList,
    load_crl,
    open_revocation_list,
    parse_reason,
    parse_serial,
    renew_crl,
    revoke,
)

runner = CliRunner()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _crl(ca_dir: Path) -> x509.CertificateRevocationList:
    return load_crl(ca_dir / CRL_FILE, (ca_dir / "ca.pem").read_bytes())


def test_revoke_writes_a_crl_signed_by_the_ca(ca_dir: Path, node_cert: x509.Certificate) -> None:
    done = revoke(
        ca_dir, serial=node_cert.serial_number, reason=x509.ReasonFlags.key_compromise, days=7
    )
    assert (done.new, done.reason, done.crl) == (True, "key_compromise", ca_dir / CRL_FILE)
    crl = _crl(ca_dir)
    entry = crl.get_revoked_certificate_by_serial_number(node_cert.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == done.date.replace(microsecond=0)
    assert crl.next_update_utc is not None
    assert dt.timedelta(days=6) < crl.next_update_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(7)


def test_revoking_keeps_earlier_entries_and_again_changes_nothing(ca_dir: Path) -> None:
    revoke(ca_dir, serial=0x1111)
    revoke(ca_dir, serial=0x2222, reason=x509.ReasonFlags.superseded)
    before = (ca_dir / CRL_FILE).read_bytes()
    again = revoke(ca_dir, serial=0x1111, reason=x509.ReasonFlags.key_compromise)
    assert (again.new, again.reason) == (False, None)  # the first revocation stands
    assert (ca_dir / CRL_FILE).read_bytes() == before
    crl = _crl(ca_dir)
    assert sorted(e.serial_number for e in crl) == [0x1111, 0x2222]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2


def test_a_crl_of_another_ca_is_refused(tmp_path: Path, ca_dir: Path) -> None:
    other = tmp_path / "other"
    init_ca(other, federation="acme-health")
    revoke(other, serial=0x1234)
    with pytest.raises(PKIError, match="not signed by this federation's CA"):
        load_crl(other / CRL_FILE, (ca_dir / "ca.pem").read_bytes())
    (ca_dir / CRL_FILE).write_bytes((other / CRL_FILE).read_bytes())
    with pytest.raises(PKIError, match="move it away"):
        revoke(ca_dir, serial=0x99)


def test_an_expired_or_unreadable_crl_is_refused(ca_dir: Path) -> None:
    revoke(ca_dir, serial=0x1234, days=1)
    path, ca_pem = ca_dir / CRL_FILE, (ca_dir / "ca.pem").read_bytes()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with pytest.raises(PKIError, match=r"expired on .*`fedsov pki crl"):
        load_crl(path, ca_pem, now=later)
    renew_crl(ca_dir, days=30)
    assert [e.serial_number for e in load_crl(path, ca_pem, now=later)] == [0x1234]
    path.write_text("not a CRL")
    with pytest.raises(PKIError, match="not a valid PEM CRL"):
        load_crl(path, ca_pem)
    with pytest.raises(PKIError, match="file not found"):
        load_crl(ca_dir / "missing.pem", ca_pem)


def test_check_names_node_serial_and_date_and_follows_the_file(
    ca_dir: Path, node_cert: x509.Certificate, caplog: pytest.LogCaptureFixture
) -> None:
    renew_crl(ca_dir)  # an empty list, distributed from the start
    crl = RevocationList(ca_dir / CRL_FILE, (ca_dir / "ca.pem").read_bytes())
    crl.check(_der(node_cert))
    revoke(ca_dir, serial=node_cert.serial_number, reason=x509.ReasonFlags.key_compromise)
    serial = f"{node_cert.serial_number:x}"
    with pytest.raises(PKIError, match=rf"'agg-eu-1' \(serial {serial}\) was revoked on 20"):
        crl.check(_der(node_cert))
    (ca_dir / CRL_FILE).write_text("torn")  # a bad update keeps the last good list
    with caplog.at_level(logging.ERROR, logger="fedsov.pki"), pytest.raises(PKIError):
        crl.check(_der(node_cert))
    assert "still enforcing the previous revocation list" in caplog.text


def test_a_node_with_a_revoked_certificate_cannot_start(ca_dir: Path, node: NodePaths) -> None:
    tls = load_tls_material(cert=node.cert, key=node.key, ca=node.ca)
    path = renew_crl(ca_dir)
    assert open_revocation_list(path, tls) is not None
    assert open_revocation_list(None, tls) is None
    assert open_revocation_list(path, None) is None  # insecure mode: no certificates
    serial = x509.load_pem_x509_certificate(tls.cert_pem).serial_number
    revoke(ca_dir, serial=serial)
    with pytest.raises(PKIError, match=r"this node cannot start: .*'agg-eu-1'"):
        open_revocation_list(path, tls)


def test_serials_and_reasons_are_parsed_or_named() -> None:
    assert parse_serial("0x1A:2b") == 0x1A2B
    with pytest.raises(PKIError, match="not a hex number"):
        parse_serial("xyz")
    assert parse_reason("key_compromise") is x509.ReasonFlags.key_compromise
    with pytest.raises(PKIError, match="expected one of unspecified"):
        parse_reason("oops")


def test_cli_revokes_by_file_and_by_serial(
    tmp_path: Path, ca_dir: Path, node: NodePaths, node_cert: x509.Certificate
) -> None:
    args = ["revoke", "--ca-dir", str(ca_dir)]
    result = runner.invoke(app, [*args, "--cert", str(node.cert), "--reason", "superseded"])
    assert result.exit_code == 0, result.output
    serial = f"{node_cert.serial_number:x}"
    assert f"revoked serial {serial}" in result.output and "(superseded)" in result.output
    again = runner.invoke(app, [*args, "--serial", serial])
    assert again.exit_code == 0, again.output
    assert f"already revoked serial {serial}" in again.output
    renewed = runner.invoke(app, ["crl", "--ca-dir", str(ca_dir), "--days", "3"])
    assert renewed.exit_code == 0, renewed.output
    assert [e.serial_number for e in _crl(ca_dir)] == [node_cert.serial_number]


def test_cli_names_what_to_fix(tmp_path: Path, ca_dir: Path) -> None:
    args = ["revoke", "--ca-dir", str(ca_dir)]
    for extra, message in (
        ([], "give --cert FILE or --serial HEX"),
        (["--serial", "ab", "--reason", "bored"], "unknown revocation reason 'bored'"),
        (["--serial", "ab", "--days", "0"], "at least 1 day"),
    ):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 2, result.output
        assert message in result.output
    other = tmp_path / "other"
    init_ca(other, federation="acme-health")
    foreign = runner.invoke(app, [*args, "--cert", str(other / "ca.pem")])
    assert foreign.exit_code == 2
    assert "was not issued by this CA" in foreign.output
