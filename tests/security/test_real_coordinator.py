"""Issue 13 against a real ``fedsov coordinator`` process over mTLS, in one round:
a second certificate claiming a connected site's name, forged contributors, 1e30
values with a wrong hash, an upload aborted halfway, a non-admitted certificate and
silent streams all fail with named statuses; then the honest sites' round completes,
its model is their FedAvg and its lineage lists exactly the sites with receipts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from hostile import (
    CoordinatorProcess,
    Listener,
    build_hostile_pki,
    fedavg,
    federation_client,
    honest_delta,
    status_of,
)

from fedsov.codec import decode, iter_chunks
from fedsov.messages import UpdateHeader
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.testing import update_for
from fedsov.transport import serde
from fedsov.transport.client import FederationClient

pytestmark = pytest.mark.e2e

HOSTILE = ("mallory-1", "mallory-2")


async def _silent(client: FederationClient, header: UpdateHeader | None) -> grpc.StatusCode:
    """An upload that sends ``header`` (or nothing) and then nothing more."""

    async def messages() -> AsyncIterator[pb.UpdateChunk]:
        if header is not None:
            yield pb.UpdateChunk(header=serde.update_header_to_proto(header))
        await asyncio.Event().wait()

    code, _ = await status_of(
        client._stub.UploadUpdate(messages(), metadata=client._metadata, timeout=60)
    )
    return code


async def _aborted_halfway(client: FederationClient, header: UpdateHeader, payload: bytes) -> None:
    pieces = [bytes(c) for c in iter_chunks(payload, 1024)]

    async def messages() -> AsyncIterator[pb.UpdateChunk]:
        yield pb.UpdateChunk(header=serde.update_header_to_proto(header))
        for piece in pieces[: len(pieces) // 2]:
            yield pb.UpdateChunk(data=piece)
        await asyncio.Event().wait()

    call = client._stub.UploadUpdate(messages(), metadata=client._metadata, timeout=60)
    await asyncio.sleep(1.0)  # half the payload is in (or the call was refused)
    call.cancel()
    await status_of(call)


def test_a_real_coordinator_keeps_its_round_whole(tmp_path: Path) -> None:
    pki = build_hostile_pki(tmp_path / "pki", hostile=HOSTILE)
    rounds = {"num_rounds": 1, "min_sites": 4, "min_updates": 2, "timeout_s": 60.0}
    server = {"first_message_timeout_s": 2.0}  # the silent streams end sooner
    with CoordinatorProcess(tmp_path, pki, rounds=rounds, server=server) as coordinator:
        result = asyncio.run(asyncio.wait_for(_round(coordinator), 120))
    codes, model_error, round_sites, lineage = result
    assert codes == {
        "impostor subscription": grpc.StatusCode.ALREADY_EXISTS,
        "forged contributors": grpc.StatusCode.INVALID_ARGUMENT,
        "1e30 with a wrong hash": grpc.StatusCode.INVALID_ARGUMENT,
        "outsider upload": grpc.StatusCode.PERMISSION_DENIED,
        "silent before the header": grpc.StatusCode.DEADLINE_EXCEEDED,
        "silent after the header": grpc.StatusCode.DEADLINE_EXCEEDED,
        "honest site-1": grpc.StatusCode.OK,
        "honest site-2": grpc.StatusCode.OK,
    }
    assert model_error < 1e-6
    assert {s["site"]: s["status"] for s in round_sites} == {
        "site-1": "accepted",
        "site-2": "accepted",
        "mallory-1": "declined",
        "mallory-2": "rejected",
    }
    assert lineage["contributors"] == lineage["sites"] == ["site-1", "site-2"]


async def _round(
    coordinator: CoordinatorProcess,
) -> tuple[dict[str, grpc.StatusCode], float, list[dict[str, object]], dict[str, object]]:
    pki = coordinator.pki
    address = coordinator.address
    listeners = {n: Listener(federation_client(address, pki.sites[n])) for n in sorted(pki.sites)}
    codes: dict[str, grpc.StatusCode] = {}
    impostor = federation_client(address, pki.impostor)
    outsider = federation_client(address, pki.outsider)
    try:
        for listener in listeners.values():
            await listener.client.join(device="cpu")
        tasks = {n: await listener.task for n, listener in listeners.items()}
        first = tasks["site-1"]
        mallory_1, mallory_2 = (listeners[n].client for n in HOSTILE)

        async def impostor_subscribes() -> None:
            async for _ in impostor.tasks():
                pass

        codes["impostor subscription"] = (await status_of(impostor_subscribes()))[0]

        shape = {s.name: np.ones(s.shape, np.float32) for s in first.manifest.tensors}
        header, payload = update_for(tasks["mallory-1"], shape, 10)
        forged = replace(header, contributors=("ghost-hospital",))
        codes["forged contributors"] = (await status_of(mallory_1.upload(forged, payload)))[0]
        await _aborted_halfway(mallory_1, header, payload)

        huge = {k: v * np.float32(1e30) for k, v in shape.items()}
        header, payload = update_for(tasks["mallory-2"], huge, 10)
        wrong = replace(header, payload_sha256="0" * 64)
        codes["1e30 with a wrong hash"] = (await status_of(mallory_2.upload(wrong, payload)))[0]

        header, payload = update_for(tasks["mallory-1"], shape, 10)
        codes["outsider upload"] = (await status_of(outsider.upload(header, payload)))[0]
        silent = await asyncio.gather(_silent(mallory_1, None), _silent(mallory_1, header))
        codes["silent before the header"], codes["silent after the header"] = silent

        base_payload = await listeners["site-1"].client.download(
            first.model_sha256, size=first.model_size
        )
        base = decode(first.manifest, base_payload, sha256=first.model_sha256)
        updates = []
        for i, site in enumerate(("site-1", "site-2")):
            delta, n = honest_delta(first.manifest, seed=i), 10 * (i + 1)
            header, payload = update_for(tasks[site], delta, n)
            sent = listeners[site].client.upload(header, payload)
            codes[f"honest {site}"] = (await status_of(sent))[0]
            updates.append((n, delta))
        task = tasks["mallory-1"]
        await mallory_1.decline(task_id=task.task_id, round=task.round, code="done", reason="")
        await listeners["site-1"].finished
    finally:
        for listener in listeners.values():
            await listener.close()
        await impostor.close()
        await outsider.close()
    model = coordinator.model(first.round)
    expected = fedavg(base, updates)
    error = max(float(np.max(np.abs(model[k] - expected[k]))) for k in expected)
    rounds = (coordinator.output_dir / "rounds.jsonl").read_text().splitlines()
    lineage_file = coordinator.output_dir / "models" / f"round-{first.round:04d}.json"
    return codes, error, json.loads(rounds[-1])["sites"], json.loads(lineage_file.read_text())
