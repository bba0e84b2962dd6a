"""load_tls_material: the checks a node runs on its own certificate, key and CA."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedsov.exceptions import PKIError
from fedsov.pki import (
    CertificateAuthority,
    NodeIdentity,
    NodePaths,
    Role,
    identity_from_pem,
    init_ca,
    issue_certificate,
    load_ca,
    load_tls_material,
    write_certificate,
)

FEDERATION = "acme-health"  # as in conftest.py


def _load(node: NodePaths) -> object:
    return load_tls_material(cert=node.cert, key=node.key, ca=node.ca)


def test_round_trip(node: NodePaths) -> None:
    tls = load_tls_material(cert=node.cert, key=node.key, ca=node.ca)
    assert tls.identity == NodeIdentity("agg-eu-1", Role.aggregator, "EU", FEDERATION)
    assert tls.cert_pem == node.cert.read_bytes()
    assert tls.ca_pem == node.ca.read_bytes()
    assert tls.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert identity_from_pem(tls.cert_pem) == tls.identity


@pytest.mark.parametrize("which", ["cert", "key", "ca"])
def test_missing_file_is_named(node: NodePaths, which: str) -> None:
    path: Path = getattr(node, which)
    path.unlink()
    with pytest.raises(PKIError, match=re.escape(f"{path}: file not found")):
        _load(node)


def _unprivileged(check: Callable[[], object]) -> str:
    """Run ``check`` in a forked child that is not root (root reads any file: as root,
    the child drops to nobody first); return what it raised, as ``Type: message``."""
    try:
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
    except KeyError:
        uid = gid = 65534
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            if os.geteuid() != 0:
                try:
                    check()
                    outcome = "nothing raised"
                except Exception as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                os.write(write, outcome.encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not drop root"
    return outcome


def test_unreadable_key_is_named(node: NodePaths) -> None:
    # Copies in a folder of their own that anyone may traverse (tmp_path's parents may
    # not be); the key readable by its owner only, then by nobody at all.
    home = Path(tempfile.mkdtemp(prefix="fedsov-unreadable-key-"))
    try:
        home.chmod(0o755)
        copies = NodePaths(cert=home / "node.pem", key=home / "node.key", ca=home / "ca.pem")
        for which in ("cert", "key", "ca"):
            source, copy = getattr(node, which), getattr(copies, which)
            shutil.copyfile(source, copy)
            copy.chmod(0o644)
        copies.key.chmod(0)
        outcome = _unprivileged(lambda: _load(copies))
        # The same files, readable, load in the same child: only the key's mode differs.
        copies.key.chmod(0o644)
        assert _unprivileged(lambda: _load(copies)) == "nothing raised"
    finally:
        shutil.rmtree(home)
    assert re.fullmatch(f"PKIError: .*{re.escape(str(copies.key))}: permission denied", outcome)


@pytest.mark.parametrize("which", ["cert", "key", "ca"])
def test_truncated_pem_is_named(node: NodePaths, which: str) -> None:
    path: Path = getattr(node, which)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PKIError, match=re.escape(f"{path}: not a valid PEM")):
        _load(node)


def test_key_cert_mismatch(node: NodePaths, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    other.write_bytes(
        load_ca(node.ca.parent).key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(
        PKIError, match=re.escape(f"private key {other} does not match certificate")
    ):
        load_tls_material(cert=node.cert, key=other, ca=node.ca)


def test_cert_from_another_ca_refused(node: NodePaths, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue"
    init_ca(rogue, federation=FEDERATION)  # same federation name, different key
    with pytest.raises(PKIError, match="was not issued by the CA"):
        load_tls_material(cert=node.cert, key=node.key, ca=rogue / "ca.pem")


def _issue(ca: CertificateAuthority, node: NodePaths, start: dt.datetime, end: dt.datetime) -> None:
    key = serialization.load_pem_private_key(node.key.read_bytes(), password=None)
    cert = issue_certificate(
        ca,
        identity=NodeIdentity("agg-eu-1", Role.aggregator, "EU", FEDERATION),
        public_key=key.public_key(),  # type: ignore[arg-type]
        not_before=start,
        not_after=end,
    )
    write_certificate(node.cert, cert)


def test_expired_cert_refused(node: NodePaths, ca: CertificateAuthority) -> None:
    now = dt.datetime.now(dt.UTC)
    _issue(ca, node, now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    with pytest.raises(PKIError, match=re.escape(f"certificate {node.cert} expired on")):
        _load(node)


def test_not_yet_valid_cert_refused(node: NodePaths, ca: CertificateAuthority) -> None:
    now = dt.datetime.now(dt.UTC)
    _issue(ca, node, now + dt.timedelta(days=1), now + dt.timedelta(days=30))
    with pytest.raises(PKIError, match="not valid yet"):
        _load(node)


def test_control_freshly_issued_cert_accepted(node: NodePaths, ca: CertificateAuthority) -> None:
    now = dt.datetime.now(dt.UTC)
    _issue(ca, node, now - dt.timedelta(minutes=1), now + dt.timedelta(days=1))
    assert load_tls_material(cert=node.cert, key=node.key, ca=node.ca).identity.name == "agg-eu-1"


def test_ca_cert_as_leaf_refused(node: NodePaths, ca_dir: Path) -> None:
    with pytest.raises(PKIError, match="does not verify"):
        load_tls_material(cert=ca_dir / "ca.pem", key=ca_dir / "ca.key", ca=node.ca)


def test_two_certificates_in_cert_file_refused(node: NodePaths) -> None:
    node.cert.write_bytes(node.cert.read_bytes() + node.ca.read_bytes())
    with pytest.raises(PKIError, match="expected exactly 1 certificate, found 2"):
        _load(node)


def test_ca_bundle_with_extra_ca_accepted(node: NodePaths, tmp_path: Path) -> None:
    init_ca(tmp_path / "x", federation="other")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes((tmp_path / "x" / "ca.pem").read_bytes() + node.ca.read_bytes())
    tls = load_tls_material(cert=node.cert, key=node.key, ca=bundle)
    assert (
        x509.load_pem_x509_certificates(tls.ca_pem)[1].subject.rfc4514_string().endswith(FEDERATION)
    )
