"""A fedsov site that trains nothing, on the site's own transport path.

It joins over mTLS (``fedsov.participant.serve_upstream``, ``FederationClient``),
keeps the site's signed audit trail (opened as ``fedsov.site.agent`` opens it),
downloads each round's model (hash-checked by ``Upstream.download``; every round,
as a training site would) and uploads a zero delta of the model's manifest, encoded
once per manifest. It imports no torch, and prints its peak RSS when it exits:

    peak_rss_kb=<ru_maxrss> torch_imported=<bool>

    python benchmarks/vs_flower/noop_site.py --address 127.0.0.1:PORT --name site-0 \\
        --cert C --key K --ca CA --audit site-0.audit.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
from pathlib import Path

import numpy as np

from fedsov.audit.trail import AuditTrail, open_audit_trail
from fedsov.codec import EncodedTensors, Manifest, encode
from fedsov.config import Backoff
from fedsov.messages import PrivacyReport, TrainTask, UpdateHeader
from fedsov.participant import ExpectedUpstream, Upstream, serve_upstream
from fedsov.pki.tls import TlsMaterial, load_tls_material
from fedsov.transport.client import FederationClient

NO_DP = PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)


class NoopSite:
    def __init__(self, name: str, tls: TlsMaterial, audit: AuditTrail) -> None:
        self.name, self.tls, self.audit = name, tls, audit
        self._zeros: dict[Manifest, EncodedTensors] = {}
        self.rounds = 0

    def _zero_delta(self, manifest: Manifest) -> EncodedTensors:
        if manifest not in self._zeros:
            self._zeros = {
                manifest: encode(
                    {s.name: np.zeros(s.shape, dtype=s.numpy_dtype) for s in manifest.tensors}
                )
            }
        return self._zeros[manifest]

    async def handle(self, upstream: Upstream, task: TrainTask) -> None:
        await upstream.download(task)  # hash-checked; discarded: nothing is trained
        update = self._zero_delta(task.manifest)
        header = UpdateHeader.answering(
            task, update, num_examples=1, privacy=NO_DP, contributors=(self.name,)
        )
        if await upstream.send(header, update.payload):
            self.rounds += 1


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--server-name", default="localhost")
    for key in ("cert", "key", "ca", "audit"):
        parser.add_argument(f"--{key}", type=Path, required=True)
    return parser.parse_args()


async def _serve(args: argparse.Namespace, site: NoopSite) -> None:
    def connect() -> FederationClient:
        return FederationClient(args.address, tls=site.tls, server_name=args.server_name)

    await serve_upstream(
        connect,
        address=args.address,
        device="cpu",
        backoff=Backoff(initial_s=0.1, max_s=1.0, max_attempts=20),
        handle=site.handle,
        audit=site.audit,
        expect=ExpectedUpstream(),
    )


def main() -> None:
    args = _args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [{args.name}] %(message)s")
    for noisy in ("grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tls = load_tls_material(cert=args.cert, key=args.key, ca=args.ca)
    site = NoopSite(args.name, tls, open_audit_trail(args.audit, tls))
    try:
        asyncio.run(_serve(args, site))
    finally:
        site.audit.close()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(
            f"rounds={site.rounds} peak_rss_kb={peak} torch_imported={'torch' in sys.modules}",
            flush=True,
        )


if __name__ == "__main__":
    main()
    logging.shutdown()
    os._exit(0)  # as the fedsov CLI ends: no interpreter teardown (fedsov.cli.main)
