"""Issue 13, item 5 (revocation): a CRL from `fedsov pki revoke`, named by the plan, is
checked at every call; rewriting it while the server runs revokes at once."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509

from fedsov.config.writer import write_toml
from fedsov.pki import NodePaths, NodeSpec, RevocationList, Role, build_pki, load_tls_material
from fedsov.pki.revoke import CRL_FILE, renew_crl, revoke
from fedsov.policy.plan import load_plan
from fedsov.simulation.hierarchy import coordinator_config, prepare_deployment, site_config
from fedsov.testing import make_engine, two_jurisdiction_plan
from fedsov.transport.client import FederationClient
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

BASE = {"w": np.zeros((4, 2), dtype=np.float32)}


async def drain(events: AsyncIterator[object]) -> None:
    async for _ in events:
        pass


def client(address: str, paths: NodePaths) -> FederationClient:
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    return FederationClient(address, tls=tls, server_name="localhost")


def test_a_revoked_site_is_refused_at_every_call_from_the_moment_the_crl_changes(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pki"
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost",))]
    nodes += [NodeSpec(name, Role.site, "EU") for name in ("site-1", "site-2")]
    pki = build_pki(root, federation="fed", nodes=nodes)
    crl = RevocationList(renew_crl(root), (root / "ca.pem").read_bytes())
    serial = x509.load_pem_x509_certificate(pki["site-1"].cert.read_bytes()).serial_number
    c = pki["coordinator"]

    async def scenario() -> None:
        eng = make_engine(tmp_path, BASE, federation="fed")
        refusals: list[tuple[str, str]] = []
        eng.refused = lambda who, decision, why: refusals.append((who.name, decision))  # type: ignore[method-assign]
        server_tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
        server = await start_server(
            FederationService(eng, revocation=crl, tls=server_tls),
            address="127.0.0.1:0",
            tls=server_tls,
        )
        address = f"127.0.0.1:{server.port}"
        one, two = client(address, pki["site-1"]), client(address, pki["site-2"])
        try:
            await one.join(device="cpu")
            live = asyncio.ensure_future(drain(one.tasks()))
            while eng.connected_sites != ["site-1"]:
                await asyncio.sleep(0.02)
            revoke(root, serial=serial, reason=x509.ReasonFlags.key_compromise)
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(live, 10)  # cut at its next heartbeat
            assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await one.join(device="cpu")
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            details = str(info.value.details())
            assert f"'site-1' (serial {serial:x}) was revoked on 20" in details
            assert "key_compromise" in details
            assert (await two.join(device="cpu")).node_name == "site-2"
            assert eng.connected_sites == [] and ("site-1", "revoked") in refusals
        finally:
            await one.close()
            await two.close()
            await server.stop(0)

    asyncio.run(scenario())


def test_the_plan_names_the_crl_beside_it(tmp_path: Path) -> None:
    text = two_jurisdiction_plan(name="fed", seed=0, rounds=1, timeout_s=30.0)
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(text.replace("seed = 0\n", f'seed = 0\nrevocation_list = "{CRL_FILE}"\n'))
    assert load_plan(plan_file).revocation_list == tmp_path / CRL_FILE
    plan_file.write_text(text)
    assert load_plan(plan_file).revocation_list is None


@pytest.mark.e2e
def test_nodes_with_a_revoked_certificate_do_not_start(tmp_path: Path) -> None:
    """Real ``fedsov coordinator`` and ``fedsov site`` processes, started with a plan whose
    CRL revokes their own certificates, stop at once and say why."""
    text = two_jurisdiction_plan(name="fed", seed=0, rounds=1, timeout_s=30.0)
    (tmp_path / "plan.toml").write_text(
        text.replace("seed = 0\n", f'seed = 0\nrevocation_list = "{CRL_FILE}"\n')
    )
    dep = prepare_deployment(load_plan(tmp_path / "plan.toml"), tmp_path / "run")
    dep.ports["agg-eu"] = 1  # never dialled: the site stops before
    write_toml(dep.config_file("coordinator"), coordinator_config(dep))
    write_toml(dep.config_file("berlin"), site_config(dep, dep.plan.node("berlin"), 1))
    for name in ("coordinator", "berlin"):
        serial = x509.load_pem_x509_certificate(dep.pki[name].cert.read_bytes()).serial_number
        revoke(dep.out / "pki", serial=serial)
    shutil.copyfile(dep.out / "pki" / CRL_FILE, dep.out / CRL_FILE)  # beside the plan copy
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "fedsov", role, "--config", str(dep.config_file(name))],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, role in (("coordinator", "coordinator"), ("berlin", "site"))
    }
    try:
        for name, proc in procs.items():
            output, _ = proc.communicate(timeout=120)
            assert proc.returncode == 2, output
            assert f"this node cannot start: the certificate of '{name}'" in output
            assert "was revoked on" in output
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
