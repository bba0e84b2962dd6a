"""build_pki: a whole federation's certificates in one call."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from fedsov.exceptions import PKIError
from fedsov.pki import NodeIdentity, NodeSpec, Role, build_pki, load_tls_material


def test_build_pki_round_trip(tmp_path: Path) -> None:
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1", "::1")),
        NodeSpec("agg-in", Role.aggregator, "IN"),
        NodeSpec("site-1", Role.site, "US"),
    ]
    paths = build_pki(tmp_path, federation="sim", nodes=nodes)
    assert list(paths) == ["coordinator", "agg-in", "site-1"]
    for spec in nodes:
        p = paths[spec.name]
        assert p.cert == tmp_path / spec.name / f"{spec.name}.pem"
        assert p.key.parent == tmp_path / spec.name
        assert stat.S_IMODE(p.key.stat().st_mode) == 0o600
        tls = load_tls_material(cert=p.cert, key=p.key, ca=p.ca)
        assert tls.identity == NodeIdentity(spec.name, spec.role, spec.jurisdiction, "sim")
    assert not (tmp_path / "coordinator" / "ca.key").exists()


def test_build_pki_is_rerunnable_and_replaces_the_ca(tmp_path: Path) -> None:
    first = build_pki(tmp_path, federation="sim", nodes=[NodeSpec("s", Role.site, "EU")])
    old_ca = first["s"].ca.read_bytes()
    second = build_pki(tmp_path, federation="sim", nodes=[NodeSpec("s", Role.site, "EU")])
    assert second["s"].ca.read_bytes() != old_ca
    load_tls_material(cert=second["s"].cert, key=second["s"].key, ca=second["s"].ca)


def test_build_pki_rejects_duplicates_and_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="duplicate node names: s"):
        build_pki(tmp_path, federation="sim", nodes=[NodeSpec("s", Role.site, "EU")] * 2)
    with pytest.raises(PKIError, match="invalid jurisdiction"):
        build_pki(tmp_path, federation="sim", nodes=[NodeSpec("s", Role.site, "Europe")])


def test_fifty_nodes_is_fast(tmp_path: Path) -> None:
    nodes = [NodeSpec(f"site-{i}", Role.site, "EU") for i in range(50)]
    start = time.perf_counter()
    paths = build_pki(tmp_path, federation="sim", nodes=nodes)
    elapsed = time.perf_counter() - start
    assert len(paths) == 50
    assert elapsed < 3.0, f"build_pki took {elapsed:.2f}s for 50 nodes"
