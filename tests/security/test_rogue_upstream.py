"""Issue 13, case 1 ("any site can pose as the coordinator") and item 7's participant
side: a real ``fedsov site`` process dials rogue upstreams served here over mTLS (a
real FederationService whose certificate is from the federation's CA) and stops,
naming what the certificate says and what it expected, before it downloads or
uploads anything; a host name mismatch stops it with the names on both sides."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography import x509

from fedsov.audit.ledger import read_ledger
from fedsov.config import write_toml
from fedsov.modelref import build_model
from fedsov.node.model import state_to_numpy
from fedsov.pki import (
    NodeIdentity,
    NodePaths,
    NodeSpec,
    Role,
    TlsMaterial,
    build_pki,
    issue_certificate,
    load_ca,
    load_tls_material,
    write_certificate,
)
from fedsov.pki._keys import generate_key, write_private_key
from fedsov.simulation.datasets import load_digits
from fedsov.simulation.processes import tls_table
from fedsov.site.data import save_npz
from fedsov.testing import make_engine
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

FED = "rogue-fed"
MODEL = {"factory": "fedsov.simulation.models:mlp", "kwargs": {"in_features": 64, "hidden": 8}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    root = tmp_path_factory.mktemp("pki")
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1")),
        NodeSpec("site-1", Role.site, "EU"),
    ]
    paths = build_pki(root, federation=FED, nodes=nodes)
    # What `fedsov pki sign` now refuses: a site certificate with server host names.
    paths["site-2"] = _issue(root, NodeIdentity("site-2", Role.site, "EU", FED))
    paths["other-coordinator"] = _issue(
        root, NodeIdentity("other-coordinator", Role.coordinator, "IN", FED)
    )
    return paths


def _issue(root: Path, identity: NodeIdentity) -> NodePaths:
    ca = load_ca(root)
    key = generate_key()
    now = dt.datetime.now(dt.UTC)
    cert = issue_certificate(
        ca,
        identity=identity,
        public_key=key.public_key(),
        hosts=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        not_before=now - dt.timedelta(minutes=1),
        not_after=now + dt.timedelta(days=1),
    )
    home = root / identity.name
    home.mkdir()
    write_private_key(home / "node.key", key)
    write_certificate(home / "node.pem", cert)
    return NodePaths(cert=home / "node.pem", key=home / "node.key", ca=root / "ca.pem")


@dataclass
class Rogue:
    """An upstream served here; counts what a site fetched from or sent to it."""

    port: int
    calls: dict[str, int] = field(default_factory=lambda: {"download": 0, "upload": 0})


@asynccontextmanager
async def serve(tmp_path: Path, paths: NodePaths) -> AsyncIterator[Rogue]:
    initial = state_to_numpy(build_model(MODEL["factory"], MODEL["kwargs"], seed=0))  # type: ignore[arg-type]
    engine = make_engine(tmp_path / "rogue", initial, federation=FED, timeout_s=60)
    tls: TlsMaterial = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    server = await start_server(FederationService(engine, tls=tls), address="127.0.0.1:0", tls=tls)
    rogue = Rogue(server.port)
    payload, receive = engine.model_payload, engine.receive_update

    def counted_payload(sha256: str) -> Any:
        rogue.calls["download"] += 1
        return payload(sha256)

    async def counted_receive(*args: Any) -> Any:
        rogue.calls["upload"] += 1
        return await receive(*args)

    engine.model_payload = counted_payload  # type: ignore[method-assign]
    engine.receive_update = counted_receive  # type: ignore[method-assign]
    run = asyncio.ensure_future(engine.run())  # a round opens: a site that joined gets a task
    try:
        yield rogue
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await server.stop(None)


def site_config(tmp_path: Path, pki: dict[str, NodePaths], port: int, **upstream: str) -> Path:
    data = tmp_path / "site-1.npz"
    save_npz(data, load_digits().subset(np.arange(64)))
    return write_toml(
        tmp_path / "site-1.toml",
        {
            "site": {"name": "site-1", "device": "cpu"},
            "upstream": {
                "address": f"127.0.0.1:{port}",
                "server_name": "localhost",
                **tls_table(pki["site-1"]),
                **upstream,
            },
            "data": {"path": str(data)},
            "model": MODEL,
            "privacy": {"enabled": False},
            "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5, "max_attempts": 20},
        },
    )


async def run_site(config: Path) -> tuple[int, str]:
    """``fedsov site`` as its own process; its exit status and output."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedsov", "site", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.to_thread(proc.communicate, timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(errors="replace")


def refusals(tmp_path: Path, decision: str = "upstream-identity") -> list[str]:
    ledger = read_ledger(tmp_path / "site-1.audit.jsonl")
    return [str(r.detail["reason"]) for r in ledger if r.decision == decision]


@pytest.mark.e2e
def test_site_refuses_an_upstream_whose_certificate_says_site(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> tuple[int, str, Rogue]:
        async with serve(tmp_path, pki["site-2"]) as rogue:
            code, out = await run_site(site_config(tmp_path, pki, rogue.port))
        return code, out, rogue

    code, out, rogue = asyncio.run(scenario())
    print(out)  # the site's own words (pytest -s shows them)
    assert code != 0, out
    said = "the upstream's certificate says name site-2, role site, jurisdiction EU"
    assert said in out
    assert "this node expects any name, role aggregator or coordinator" in out
    assert "check [upstream] address" in out  # the CLI keeps [section] names
    assert rogue.calls == {"download": 0, "upload": 0}
    assert any(said in reason for reason in refusals(tmp_path))


@pytest.mark.e2e
def test_site_refuses_an_upstream_with_another_name(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> tuple[int, str, Rogue]:
        async with serve(tmp_path, pki["other-coordinator"]) as rogue:
            config = site_config(tmp_path, pki, rogue.port, name="coordinator")
            code, out = await run_site(config)
        return code, out, rogue

    code, out, rogue = asyncio.run(scenario())
    print(out)  # the site's own words (pytest -s shows them)
    assert code != 0, out
    assert "says name other-coordinator, role coordinator, jurisdiction IN" in out
    assert "this node expects name coordinator, role aggregator or coordinator" in out
    assert rogue.calls == {"download": 0, "upload": 0}


@pytest.mark.e2e
def test_site_stops_on_a_host_name_mismatch_naming_both(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    """The coordinator's certificate names localhost and 127.0.0.1; the site dials
    "coordinator": it stops at once (no retry loop) and says so."""

    async def scenario() -> tuple[int, str, Rogue]:
        async with serve(tmp_path, pki["coordinator"]) as upstream:
            config = site_config(tmp_path, pki, upstream.port, server_name="coordinator")
            code, out = await run_site(config)
        return code, out, upstream

    code, out, upstream = asyncio.run(scenario())
    print(out)  # the site's own words (pytest -s shows them)
    assert code != 0, out
    assert "TLS host name check failed: this node dialled the name 'coordinator'" in out
    assert "names DNS localhost, IP 127.0.0.1" in out
    assert "coordinator, role coordinator, EU" in out  # who the certificate is for
    assert "reconnecting in" not in out
    assert upstream.calls == {"download": 0, "upload": 0}
    assert any("dialled the name 'coordinator'" in r for r in refusals(tmp_path, "upstream-tls"))
