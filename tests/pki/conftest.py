"""Fixtures: a fresh CA and a signed node certificate."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from fedsov.pki import (
    CertificateAuthority,
    NodePaths,
    Role,
    init_ca,
    load_ca,
    make_csr,
    sign_csr,
    write_certificate,
)

FEDERATION = "acme-health"  # tests repeat this literal rather than import conftest


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ca"
    init_ca(directory, federation=FEDERATION)
    return directory


@pytest.fixture
def ca(ca_dir: Path) -> CertificateAuthority:
    return load_ca(ca_dir)


@pytest.fixture
def node(tmp_path: Path, ca_dir: Path, ca: CertificateAuthority) -> NodePaths:
    key, csr = make_csr(
        tmp_path / "agg",
        name="agg-eu-1",
        role=Role.aggregator,
        jurisdiction="EU",
        federation=FEDERATION,
        hosts=("localhost", "127.0.0.1", "::1"),
    )
    cert = tmp_path / "agg" / "agg-eu-1.pem"
    write_certificate(cert, sign_csr(ca, csr.read_bytes()))
    return NodePaths(cert=cert, key=key, ca=ca_dir / "ca.pem")


@pytest.fixture
def node_cert(node: NodePaths) -> x509.Certificate:
    return x509.load_pem_x509_certificate(node.cert.read_bytes())
