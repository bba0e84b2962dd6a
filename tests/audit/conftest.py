"""Fixtures: real node keys and certificates, and ledgers written with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_helpers import PLAN, WriteLedger, digest

from fedsov.audit import AuditLedger, Checkpoint, Signer
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki
from fedsov.pki._keys import generate_key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    nodes = [
        NodeSpec("site-1", Role.site, "EU"),
        NodeSpec("agg-eu", Role.aggregator, "EU"),
    ]
    return build_pki(tmp_path_factory.mktemp("pki"), federation="audit-fed", nodes=nodes)


@pytest.fixture(scope="session")
def site_signer(pki: dict[str, NodePaths]) -> Signer:
    return Signer.load(pki["site-1"].key)


@pytest.fixture(scope="session")
def foreign_signer() -> Signer:
    return Signer(generate_key())


@pytest.fixture
def write_ledger(site_signer: Signer) -> WriteLedger:
    """Append ``n`` update-sent records as site-1 (EU); returns the checkpoints handed out."""

    def write(
        path: Path,
        n: int,
        *,
        signer: Signer = site_signer,
        node: str = "site-1",
        checkpoint_every: int = 1000,
        close: bool = False,
    ) -> list[Checkpoint]:
        held: list[Checkpoint] = []
        ledger = AuditLedger.open(
            path,
            signer=signer,
            node=node,
            jurisdiction="EU",
            plan_sha256=PLAN,
            checkpoint_every=checkpoint_every,
            on_checkpoint=held.append,
        )
        start = len(ledger)
        for i in range(start, start + n):
            ledger.append(
                event="update-sent",
                round=i,
                peer="agg-eu",
                peer_jurisdiction="EU",
                content_sha256=digest(f"update {i}"),
                epsilon=0.5 * (i + 1),
                delta=1e-5,
                decision="allowed",
                detail={"task": f"t{i}", "note": "ε spent"},
            )
        if close:
            ledger.close()
        return held

    return write
