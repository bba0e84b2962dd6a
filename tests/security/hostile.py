"""Harness of the hostile-peer tests (issue 13): a real coordinator and what attacks it.

- ``build_hostile_pki``: a throwaway federation PKI with honest sites, admitted hostile
  sites, and hostile material: a same-CA site outside the allow-list, a same-CA
  certificate with an honest site's name (a second key), another CA's certificate.
- ``CoordinatorProcess``: ``python -m fedsov coordinator`` over mTLS on 127.0.0.1 port 0,
  killed by PID on exit (pass or fail); its RSS from /proc.
- ``open_channel``, ``RawCalls``, ``serving``: a grpc.aio channel with any certificate,
  every Federation RPC with bytes in and out (undecodable requests travel too), and
  the grpc.health.v1 check.
- ``Fuzzer``: seeded random requests over every RPC; ``fuzz_then_honest_round`` runs
  them and then an honest round whose model is checked against the honest FedAvg.

Used by tests/security/test_fuzz_rpc.py and benchmarks/fuzz_rpc.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import grpc
import numpy as np
import safetensors.numpy
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedsov.codec import Manifest, decode, encode
from fedsov.config import write_toml
from fedsov.messages import Finished, PrivacyReport, TrainTask, UpdateHeader
from fedsov.pki import (
    NodePaths,
    NodeSpec,
    Role,
    build_pki,
    load_ca,
    make_csr,
    sign_csr,
    write_certificate,
)
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import tensors_pb2 as tpb
from fedsov.testing import tls_client, update_for
from fedsov.transport import serde
from fedsov.transport.client import FederationClient
from fedsov.transport.options import CLIENT_OPTIONS, MAX_MESSAGE_BYTES

FEDERATION = "hostile"
HONEST = ("site-1", "site-2")
OUTSIDER = "eve"  # same CA, role site, not in the allow-list
SERVER_NAME = "localhost"
MODEL = {"factory": "fedsov.simulation.models:mlp", "kwargs": {"in_features": 64, "hidden": 16}}
SERVICE = "/fedsov.proto.v1.Federation"
RPCS = ("Join", "SubscribeTasks", "DownloadModel", "UploadUpdate", "DeclineTask")
MiB = 2**20

Code = grpc.StatusCode
# Refusals with a name: what a hostile request may end with (never UNKNOWN or INTERNAL).
# DEADLINE_EXCEEDED: a late answer (LateUpdate), or this side's deadline on a call left open.
REFUSALS = frozenset(
    {
        Code.INVALID_ARGUMENT,
        Code.FAILED_PRECONDITION,
        Code.PERMISSION_DENIED,
        Code.UNAUTHENTICATED,
        Code.NOT_FOUND,
        Code.ALREADY_EXISTS,
        Code.OUT_OF_RANGE,
        Code.RESOURCE_EXHAUSTED,
        Code.DEADLINE_EXCEEDED,
        Code.DATA_LOSS,
        Code.ABORTED,
    }
)
# A certificate outside the allow-list is refused before anything is allocated for it.
OUTSIDER_STATUSES = frozenset(
    {Code.PERMISSION_DENIED, Code.UNAUTHENTICATED, Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED}
)
FOREIGN_STATUSES = frozenset({Code.UNAVAILABLE})  # the TLS handshake fails, client-side


def allowed_statuses(who: str, rpc: str) -> frozenset[grpc.StatusCode]:
    """The statuses a fuzzed call of ``rpc`` by ``who`` may legitimately end with.

    An admitted site's join, subscription, download and decline may succeed; none of
    its fuzzed uploads may (each is built to be refused), nor anything of the others.
    """
    if who == "foreign":
        return FOREIGN_STATUSES
    if who == "outsider":
        return OUTSIDER_STATUSES
    return REFUSALS if rpc == "UploadUpdate" else REFUSALS | {Code.OK}


# ----- PKI ---------------------------------------------------------------------------


def hostile_sites(count: int) -> tuple[str, ...]:
    """Names of admitted hostile sites: in the allow-list, each gets a task."""
    return tuple(f"mallory-{i}" for i in range(1, count + 1))


@dataclass(frozen=True)
class HostilePki:
    coordinator: NodePaths
    sites: dict[str, NodePaths]  # the allow-list: honest and admitted hostile sites
    honest: tuple[str, ...]
    hostile: tuple[str, ...]
    outsider: NodePaths
    impostor: NodePaths  # same CA, HONEST[0]'s name, its own key
    foreign: NodePaths  # another CA's certificate for HONEST[0]; trusts the real CA

    def material(self, who: str) -> NodePaths:
        named = {"outsider": self.outsider, "impostor": self.impostor, "foreign": self.foreign}
        return named.get(who) or self.sites[who]


def build_hostile_pki(
    directory: Path, *, honest: Sequence[str] = HONEST, hostile: Sequence[str] = hostile_sites(3)
) -> HostilePki:
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", (SERVER_NAME, "127.0.0.1"))]
    nodes += [NodeSpec(name, Role.site, "EU") for name in (*honest, *hostile, OUTSIDER)]
    paths = build_pki(directory / "federation", federation=FEDERATION, nodes=nodes)
    ca = paths["coordinator"].ca
    other = build_pki(
        directory / "foreign", federation=FEDERATION, nodes=[NodeSpec(honest[0], Role.site, "EU")]
    )[honest[0]]
    return HostilePki(
        coordinator=paths["coordinator"],
        sites={name: paths[name] for name in (*honest, *hostile)},
        honest=tuple(honest),
        hostile=tuple(hostile),
        outsider=paths[OUTSIDER],
        impostor=_second_key(directory / "impostor", directory / "federation", honest[0], ca),
        foreign=NodePaths(cert=other.cert, key=other.key, ca=ca),
    )


def _second_key(directory: Path, ca_dir: Path, name: str, ca: Path) -> NodePaths:
    """A certificate of the federation's CA for ``name``, on a key of its own."""
    key, csr = make_csr(
        directory, name=name, role=Role.site, jurisdiction="EU", federation=FEDERATION, force=True
    )
    cert = directory / f"{name}.pem"
    write_certificate(cert, sign_csr(load_ca(ca_dir), csr.read_bytes()))
    return NodePaths(cert=cert, key=key, ca=ca)


# ----- the coordinator process -------------------------------------------------------


class CoordinatorProcess:
    """A real ``fedsov coordinator`` over mTLS on 127.0.0.1 port 0; killed on exit."""

    def __init__(
        self,
        out: Path,
        pki: HostilePki,
        *,
        rounds: Mapping[str, object],
        heartbeat_s: float = 0.5,
        server: Mapping[str, object] | None = None,
    ) -> None:
        """``heartbeat_s``: short, so an open task stream says so at once; ``server``:
        more ``[server]`` keys (stream limits)."""
        self.out = out
        self.pki = pki
        self.rounds = rounds
        self.heartbeat_s = heartbeat_s
        self.server = dict(server or {})
        self.port_file = out / "coordinator.port"
        self.log = out / "coordinator.log"
        self.output_dir = out / "coordinator"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def config(self) -> Path:
        c = self.pki.coordinator
        return write_toml(
            self.out / "coordinator.toml",
            {
                "federation": {"name": FEDERATION, "seed": 3, "sites": sorted(self.pki.sites)},
                "server": {
                    "address": "127.0.0.1:0",
                    "port_file": str(self.port_file),
                    "cert": str(c.cert),
                    "key": str(c.key),
                    "ca": str(c.ca),
                    **self.server,
                },
                "model": MODEL,
                "rounds": dict(self.rounds),
                "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
                "output": {"dir": str(self.output_dir)},
                "heartbeat_s": self.heartbeat_s,
            },
        )

    def start(self, timeout: float = 120.0) -> None:
        self.port_file.unlink(missing_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fedsov", "coordinator", "--config", str(self.config())],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(f"coordinator did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        """The coordinator's resident memory (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def model(self, round: int) -> dict[str, np.ndarray]:
        path = self.output_dir / "models" / f"round-{round:04d}.safetensors"
        return dict(safetensors.numpy.load_file(str(path)))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def __enter__(self) -> CoordinatorProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ----- channels and raw calls --------------------------------------------------------


def open_channel(address: str, paths: NodePaths) -> grpc.aio.Channel:
    """A secure channel presenting ``paths``' certificate; sends messages past the
    server's size limit (so it is the server's limit that is tried)."""
    options = [o for o in CLIENT_OPTIONS if o[0] != "grpc.max_send_message_length"]
    options += [
        ("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES),
        ("grpc.ssl_target_name_override", SERVER_NAME),
    ]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=paths.ca.read_bytes(),
        private_key=paths.key.read_bytes(),
        certificate_chain=paths.cert.read_bytes(),
    )
    return grpc.aio.secure_channel(address, credentials, options=options)


def federation_client(address: str, paths: NodePaths) -> FederationClient:
    return tls_client(address, paths, SERVER_NAME)


@dataclass(frozen=True)
class Stall:
    """In an upload's messages: send nothing more for ``seconds``."""

    seconds: float


UploadPart = bytes | Stall


class RawCalls:
    """Every Federation RPC, bytes in and bytes out: undecodable requests travel too."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel  # no (de)serializers below: bytes as they are

    async def unary(self, method: str, request: bytes, *, timeout: float) -> bytes:
        call = self.channel.unary_unary(f"{SERVICE}/{method}", None, None)
        response: bytes = await call(request, timeout=timeout)
        return response

    async def first_of_stream(self, method: str, request: bytes, *, timeout: float) -> bytes:
        """The first message of a server stream (b"" if it ends empty); then cancel it."""
        call = self.channel.unary_stream(f"{SERVICE}/{method}", None, None)(
            request, timeout=timeout
        )
        try:
            async for message in call:
                return bytes(message)
            return b""
        finally:
            call.cancel()

    async def whole_stream(self, method: str, request: bytes, *, timeout: float) -> int:
        """Read a server stream to its end; the bytes received."""
        call = self.channel.unary_stream(f"{SERVICE}/{method}", None, None)(
            request, timeout=timeout
        )
        return sum([len(message) async for message in call])

    async def client_stream(
        self, method: str, parts: Sequence[UploadPart], *, timeout: float
    ) -> bytes:
        call = self.channel.stream_unary(f"{SERVICE}/{method}", None, None)
        response: bytes = await call(_send(parts), timeout=timeout)
        return response


async def _send(parts: Sequence[UploadPart]) -> AsyncIterator[bytes]:
    for part in parts:
        if isinstance(part, Stall):
            await asyncio.sleep(part.seconds)
        else:
            yield part


async def status_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    """The status a call ended with, and its details."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), str(exc.details() or "")
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # cancelled from outside: not this call's outcome
        # grpc.aio ends an empty client stream on a channel whose handshake failed so.
        return Code.CANCELLED, CLIENT_CANCELLED
    return Code.OK, ""


CLIENT_CANCELLED = "client-side CancelledError from grpc.aio"
# Statuses grpc.aio makes up on this side, not the server's answer: an empty upload
# stream on a channel whose handshake failed; a write after the server ended the call
# (its status, a refusal, is lost: the coordinator's log has it).
CLIENT_SIDE = frozenset(
    {(Code.CANCELLED, CLIENT_CANCELLED), (Code.INTERNAL, "Internal error from Core")}
)


async def serving(channel: grpc.aio.Channel, timeout: float = 15.0) -> bool:
    """grpc.health.v1 says SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


# ----- fuzzed requests ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What the fuzzer aims at: the open round's tasks and the model being served."""

    tasks: dict[str, TrainTask]  # by site: the admitted hostile sites' and the honest ones'
    model_sha256: str
    model_size: int
    manifest: Manifest


@dataclass(frozen=True)
class Case:
    who: str  # an admitted hostile site's name, "outsider" or "foreign"
    rpc: str
    kind: str  # structured:<what> | flipped | random
    parts: tuple[UploadPart, ...] = field(repr=False)  # one request, or an upload's messages


HOSTILE_FLOATS = (float("nan"), float("inf"), float("-inf"), 1e308, -1e308, -0.0, 5e-324, 1e30)
HOSTILE_UINTS = (0, 1, 2**31, 2**32 - 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1)


class Fuzzer:
    """Seeded random requests: hostile field values, byte flips of valid messages, noise.

    Every fuzzed upload breaks at least one rule the coordinator must enforce (task,
    hash, manifest, size, order, finiteness, norm, weight), so none may be accepted;
    decorations that need not be refused (forged contributors, NaN metrics, long
    strings) ride along on top.
    """

    def __init__(self, rng: random.Random, target: Target, admitted: Sequence[str]) -> None:
        self.rng = rng
        self.target = target
        self.admitted = tuple(admitted)

    def case(self) -> Case:
        r = self.rng
        share = 0.7 / len(self.admitted)
        who = r.choices(
            [*self.admitted, "outsider", "foreign"], [share] * len(self.admitted) + [0.2, 0.1]
        )[0]
        rpc = r.choices(RPCS, [0.12, 0.12, 0.16, 0.45, 0.15])[0]
        mode = r.choices(("structured", "flipped", "random"), [0.6, 0.2, 0.2])[0]
        if mode == "random":
            return Case(who, rpc, "random", self._noise(rpc))
        what, parts = self._structured(rpc, who if who in self.admitted else self.admitted[0])
        if mode == "flipped":
            return Case(who, rpc, f"flipped:{what}", self._flip(parts))
        return Case(who, rpc, f"structured:{what}", parts)

    # values

    def string(self) -> str:
        r = self.rng
        return r.choice(
            (
                "",
                "x" * r.choice((1, 255, 4096, 100_000)),
                "\x00\x01\x7f",
                "ü∂😈" * r.randint(1, 200),
                "../../etc/passwd",
                "%s%n{0}\r\n",
                "".join(r.choice("0123456789abcdef") for _ in range(64)),
            )
        )

    def uint(self, wrong_for: int | None = None) -> int:
        """A hostile unsigned 64-bit value; never ``wrong_for``, near it if given."""
        r = self.rng
        pool = [*HOSTILE_UINTS, r.getrandbits(64)]
        if wrong_for is not None:
            pool = [v for v in [*pool, wrong_for + 1, max(wrong_for - 1, 0)] if v != wrong_for]
        return r.choice(pool)

    def wrong_hash(self) -> str:
        return self.rng.choice(
            (
                "",
                "00" * 32,
                "g" * 64,
                "".join(self.rng.choice("0123456789abcdef") for _ in range(64)),
            )
        )

    def dtype_code(self) -> tpb.DType:
        """A DType enum value, or a code the enum does not have (proto3 enums are open)."""
        return cast("tpb.DType", self.rng.choice((0, 1, 2, 3, 7, 99)))

    def manifest(self) -> tpb.Manifest:
        r = self.rng
        tensors = []
        for _ in range(r.choice((0, 1, 2, 5, 300))):
            shape = [
                r.choice((-1, 0, 1, 7, 2**31, 2**62, -(2**63))) for _ in range(r.randint(0, 4))
            ]
            tensors.append(
                tpb.TensorSpec(name=self.string()[:300], dtype=self.dtype_code(), shape=shape)
            )
        return tpb.Manifest(tensors=tensors)

    # messages

    def _structured(self, rpc: str, site: str) -> tuple[str, tuple[UploadPart, ...]]:
        build: dict[str, Callable[[str], tuple[str, tuple[UploadPart, ...]]]] = {
            "Join": self._join,
            "SubscribeTasks": lambda _: ("empty", (pb.SubscribeRequest().SerializeToString(),)),
            "DownloadModel": self._download,
            "UploadUpdate": self._upload,
            "DeclineTask": self._decline,
        }
        return build[rpc](site)

    def _join(self, site: str) -> tuple[str, tuple[UploadPart, ...]]:
        msg = pb.JoinRequest(software_version=self.string(), device=self.string())
        return "strings", (msg.SerializeToString(),)

    def _download(self, site: str) -> tuple[str, tuple[UploadPart, ...]]:
        r, t = self.rng, self.target
        sha = r.choice((t.model_sha256, t.model_sha256.upper(), self.wrong_hash(), self.string()))
        offset = r.choice((0, t.model_size, t.model_size + 1, self.uint(wrong_for=t.model_size)))
        msg = pb.DownloadRequest(model_sha256=sha, offset=offset)
        what = f"{'model' if sha == t.model_sha256 else 'unknown'}@{offset}"
        return what, (msg.SerializeToString(),)

    def _decline(self, site: str) -> tuple[str, tuple[UploadPart, ...]]:
        r = self.rng
        task = self._some_task(site)
        task_id, rnd = task.task_id, task.round
        if r.random() < 0.9:  # mostly a wrong task or round: a decline ends the task
            if r.random() < 0.5:
                task_id = self.string()
            else:
                rnd = r.choice((0, self.uint(wrong_for=task.round)))
        reason = "r" * MiB if r.random() < 0.05 else self.string()
        msg = pb.DeclineRequest(task_id=task_id, round=rnd, code=self.string(), reason=reason)
        return "task" if task_id == task.task_id else "unknown-task", (msg.SerializeToString(),)

    def _some_task(self, site: str) -> TrainTask:
        """Mostly ``site``'s own task, sometimes another site's."""
        tasks = self.target.tasks
        if self.rng.random() < 0.75:
            return tasks[site]
        return tasks[self.rng.choice(sorted(tasks))]

    def _upload(self, site: str) -> tuple[str, tuple[UploadPart, ...]]:
        """A header and chunks with at least one fault that must be refused."""
        r, t = self.rng, self.target
        task = self._some_task(site)
        values = r.choice(("huge", "nan", "inf", "small"))
        arrays = self._arrays(values)
        enc = encode(arrays)
        header = serde.update_header_to_proto(
            UpdateHeader(
                task_id=task.task_id,
                round=task.round,
                manifest=enc.manifest,
                num_examples=r.choice((1, 10, 1000)),
                payload_size=enc.size,
                payload_sha256=enc.sha256,
                base_model_sha256=t.model_sha256,
                privacy=PrivacyReport(enabled=False, epsilon=0.0, delta=0.0),
            )
        )
        faults = [] if values == "small" else [f"values-{values}"]
        if task is not t.tasks[site]:
            faults.append("other-site-task")
        self._decorate(header)
        faults += r.sample(HEADER_FAULTS, r.choice((0, 0, 1, 2)))
        for fault in faults:
            self._break_header(fault, header)
        stream = r.choice(STREAM_FAULTS) if r.random() < 0.5 or not faults else "chunks"
        parts = self._stream(stream, header, bytes(enc.payload))
        return "+".join([*faults, stream]), parts

    def _arrays(self, values: str) -> dict[str, np.ndarray]:
        out = {}
        for spec in self.target.manifest.tensors:
            a = self.rng_array(spec.shape)
            if values == "huge":
                a[...] = self.rng.choice((1e30, -1e30, 3e38))
            elif values in ("nan", "inf") and a.size:
                a.reshape(-1)[self.rng.randrange(a.size)] = np.nan if values == "nan" else np.inf
            out[spec.name] = a
        return out

    def rng_array(self, shape: tuple[int, ...]) -> np.ndarray:
        gen = np.random.default_rng(self.rng.getrandbits(32))
        return (gen.standard_normal(shape) * 0.01).astype(np.float32)

    def _break_header(self, fault: str, header: pb.UpdateHeader) -> None:
        r = self.rng
        match fault:
            case "wrong-hash":
                header.payload_sha256 = self.wrong_hash()
            case "wrong-base":
                header.base_model_sha256 = self.wrong_hash()
            case "unknown-task":
                header.task_id = self.string()
            case "wrong-round":
                header.round = self.uint(wrong_for=header.round)
            case "random-manifest":
                header.manifest.CopyFrom(self.manifest())
            case "bad-weight":
                header.num_examples = r.choice((0, 2**53 + 1, 2**63 - 1, 2**64 - 1))
            case "bad-size":
                size = header.payload_size
                header.payload_size = r.choice((0, size + 1, size - 1, 2**64 - 1))

    def _stream(self, how: str, header: pb.UpdateHeader, payload: bytes) -> tuple[UploadPart, ...]:
        """An upload's messages: ``how`` they break the protocol (or "chunks": they do not)."""
        r = self.rng
        head = _header(header)
        streams: dict[str, Callable[[], list[UploadPart]]] = {
            "chunks": lambda: [head, *_chunked(payload, r.choice((len(payload), 1000, 4096)))],
            "truncated": lambda: [head, _data(payload[: r.randrange(len(payload))])],
            "extra-bytes": lambda: [head, _data(payload + r.randbytes(r.randint(1, 4096)))],
            "empty-chunks": lambda: [head, _data(b""), _data(payload[:100]), _data(b"")],
            # One message past the server's limit.
            "oversized-chunk": lambda: [head, _data(payload + bytes(MAX_MESSAGE_BYTES + MiB))],
            "tiny-chunks": lambda: [head, *_chunked(payload[:2048], r.choice((1, 3, 64)))],
            "data-first": lambda: [_data(payload[:100]), head, _data(payload[100:])],
            "two-headers": lambda: [head, head, _data(payload)],
            "header-only": lambda: [head],
            "no-messages": lambda: r.choice(NO_MESSAGES),
            "stall-after-header": lambda: [head, Stall(STALL_S * 4)],
        }
        return tuple(streams[how]())

    def _decorate(self, header: pb.UpdateHeader) -> None:
        """Hostile values in fields that alone need not be refused."""
        r = self.rng
        if r.random() < 0.3:
            header.contributors.extend(r.choice((["ghost-hospital"], [self.string()] * 50)))
        if r.random() < 0.3:
            header.metrics[r.choice(("loss", "sites", self.string()[:100]))] = r.choice(
                HOSTILE_FLOATS
            )
        if r.random() < 0.2:
            p = header.privacy
            p.enabled = r.random() < 0.5
            p.epsilon, p.delta = r.choice(HOSTILE_FLOATS), r.choice(HOSTILE_FLOATS)
            p.steps, p.total_steps = self.uint(), self.uint()
            p.accountant = self.string()
        if r.random() < 0.1:
            header.audit_checkpoint.seq = self.uint()
            header.audit_checkpoint.sha256 = self.string()

    def _flip(self, parts: Sequence[UploadPart]) -> tuple[UploadPart, ...]:
        """The same messages, with a few bytes of one of them changed, cut or repeated."""
        r = self.rng
        out = list(parts)
        if not out:
            return (bytes([r.randrange(256)]),)
        index = r.choice([i for i, p in enumerate(out) if isinstance(p, bytes)] or [0])
        chosen = out[index]
        message = bytearray(chosen if isinstance(chosen, bytes) else b"")
        how = r.choice(("xor", "xor", "cut", "repeat"))
        if not message or how == "repeat":
            message = message * 2 if message else bytearray([r.randrange(256)])
        elif how == "cut":
            del message[r.randrange(len(message)) :]
        else:
            for _ in range(r.randint(1, 8)):
                message[r.randrange(len(message))] ^= r.randint(1, 255)
        out[index] = bytes(message)
        return tuple(out)

    def _noise(self, rpc: str) -> tuple[UploadPart, ...]:
        r = self.rng
        count = r.randint(1, 4) if rpc == "UploadUpdate" else 1
        return tuple(
            r.randbytes(r.choice((0, 1, r.randint(2, 64), r.randint(65, 4096))))
            for _ in range(count)
        )


HEADER_FAULTS = (
    "wrong-hash",
    "wrong-base",
    "unknown-task",
    "wrong-round",
    "random-manifest",
    "bad-weight",
    "bad-size",
)
STREAM_FAULTS = (
    "truncated",
    "extra-bytes",
    "empty-chunks",
    "oversized-chunk",
    "tiny-chunks",
    "data-first",
    "two-headers",
    "header-only",
    "no-messages",
    "stall-after-header",
)
# An upload that sends no message, an undecodable one, or one with no part.
NO_MESSAGES: tuple[list[UploadPart], ...] = ([], [b"\x00"], [pb.UpdateChunk().SerializeToString()])
STALL_S = 0.3  # a stalled upload's deadline, this side


def _header(header: pb.UpdateHeader) -> bytes:
    return pb.UpdateChunk(header=header).SerializeToString()


def _data(data: bytes) -> bytes:
    return pb.UpdateChunk(data=data).SerializeToString()


def _chunked(payload: bytes, size: int) -> list[UploadPart]:
    return [_data(payload[i : i + size]) for i in range(0, len(payload), size)]


# ----- running the cases -------------------------------------------------------------

UNARY_TIMEOUT_S = 20.0
SUBSCRIBE_TIMEOUT_S = 5.0  # an open stream sends a heartbeat within heartbeat_s


async def send(calls: RawCalls, case: Case) -> tuple[grpc.StatusCode, str]:
    """Send one case; the status it ended with."""
    request = case.parts[0] if case.parts and isinstance(case.parts[0], bytes) else b""
    match case.rpc:
        case "Join" | "DeclineTask":
            return await status_of(calls.unary(case.rpc, request, timeout=UNARY_TIMEOUT_S))
        case "SubscribeTasks":
            return await status_of(
                calls.first_of_stream(case.rpc, request, timeout=SUBSCRIBE_TIMEOUT_S)
            )
        case "DownloadModel":
            return await status_of(calls.whole_stream(case.rpc, request, timeout=UNARY_TIMEOUT_S))
        case _:
            stalls = any(isinstance(p, Stall) for p in case.parts)
            timeout = STALL_S if stalls else UNARY_TIMEOUT_S
            return await status_of(calls.client_stream(case.rpc, case.parts, timeout=timeout))


@dataclass(frozen=True)
class Outcome:
    case: Case
    code: grpc.StatusCode
    details: str

    @property
    def client_side(self) -> bool:
        """grpc.aio's own status on this side, not the server's (see CLIENT_SIDE)."""
        return (self.code, self.details) in CLIENT_SIDE

    @property
    def allowed(self) -> bool:
        return self.client_side or self.code in allowed_statuses(self.case.who, self.case.rpc)

    @property
    def label(self) -> str:
        return f"{self.code.name}{' (client-side)' if self.client_side else ''}"

    def describe(self) -> str:
        return (
            f"{self.case.rpc} by {self.case.who} ({self.case.kind}): "
            f"{self.code.name} {self.details[:200]!r}"
        )


@dataclass(repr=False)
class FuzzReport:
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    rss_before: int = 0
    rss_after: int = 0
    alive_after_fuzz: bool = False
    serving_after_fuzz: bool = False
    honest_receipts: dict[str, str] = field(default_factory=dict)  # site -> status name
    finished: Finished | None = None
    model_error: float | None = None  # max |model - honest FedAvg| of the round
    round_sites: list[dict[str, Any]] = field(default_factory=list)  # rounds.jsonl's sites
    fuzz_seconds: float = 0.0
    wall_seconds: float = 0.0
    log_tail: str = ""

    def __repr__(self) -> str:
        return f"<FuzzReport seed={self.seed}: {len(self.outcomes)} requests>"

    @property
    def violations(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.allowed]

    def histogram(self) -> Counter[str]:
        return Counter(o.label for o in self.outcomes)

    def by_rpc(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for o in self.outcomes:
            key = f"{o.case.rpc} by {_kind_of_peer(o.case.who)}"
            out.setdefault(key, Counter())[o.label] += 1
        return out


def _kind_of_peer(who: str) -> str:
    return who if who in ("outsider", "foreign") else "admitted"


class Listener:
    """Reads one site's task stream in the background: its first task, and Finished."""

    def __init__(self, client: FederationClient) -> None:
        self.client = client
        loop = asyncio.get_running_loop()
        self.task: asyncio.Future[TrainTask] = loop.create_future()
        self.finished: asyncio.Future[Finished] = loop.create_future()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.client.tasks():
                if isinstance(event, TrainTask) and not self.task.done():
                    self.task.set_result(event)
                if isinstance(event, Finished) and not self.finished.done():
                    self.finished.set_result(event)
                    return
        except grpc.aio.AioRpcError:
            return  # a stream the fuzz replaced or cut: nothing more to hear on it

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.client.close()


def honest_delta(manifest: Manifest, seed: int) -> dict[str, np.ndarray]:
    gen = np.random.default_rng(seed)
    return {
        s.name: (gen.standard_normal(s.shape) * 0.05).astype(np.float32) for s in manifest.tensors
    }


def fedavg(
    base: Mapping[str, np.ndarray], updates: Sequence[tuple[int, Mapping[str, np.ndarray]]]
) -> dict[str, np.ndarray]:
    """base + Σ n_i·Δ_i / Σ n_i, in float64."""
    total = sum(n for n, _ in updates)
    return {
        name: base[name].astype(np.float64)
        + sum(n * d[name].astype(np.float64) for n, d in updates) / total
        for name in base
    }


async def fuzz_then_honest_round(
    coordinator: CoordinatorProcess,
    *,
    requests: int,
    seed: int,
    concurrency: int = 1,
    deadline_s: float = 180.0,
) -> FuzzReport:
    """Open a round (honest and admitted hostile sites subscribed), send ``requests``
    fuzzed requests, then complete the round with honest uploads; every wait is bounded."""
    started = time.monotonic()
    report = FuzzReport(seed=seed)
    pki = coordinator.pki
    names = sorted(pki.sites)
    listeners = {n: Listener(federation_client(coordinator.address, pki.sites[n])) for n in names}
    channels = {
        who: open_channel(coordinator.address, pki.material(who))
        for who in (*pki.hostile, "outsider", "foreign")
    }
    try:
        async with asyncio.timeout(deadline_s):
            for listener in listeners.values():
                await listener.client.join(device="cpu")
            tasks = {n: await listeners[n].task for n in names}
            first = tasks[pki.honest[0]]
            target = Target(tasks, first.model_sha256, first.model_size, first.manifest)
            report.rss_before = coordinator.rss_bytes()
            t0 = time.monotonic()
            report.outcomes = await _fuzz(
                channels, pki.hostile, target, requests, seed, concurrency
            )
            report.fuzz_seconds = time.monotonic() - t0
            report.alive_after_fuzz = coordinator.alive()
            report.serving_after_fuzz = await serving(channels[pki.hostile[0]])
            report.rss_after = coordinator.rss_bytes() if coordinator.alive() else 0
            await _honest_round(report, listeners, target, coordinator)
    finally:
        for listener in listeners.values():
            await listener.close()
        for channel in channels.values():
            await channel.close(None)
        report.wall_seconds = time.monotonic() - started
        report.log_tail = coordinator.log_tail()
    return report


async def _fuzz(
    channels: Mapping[str, grpc.aio.Channel],
    admitted: Sequence[str],
    target: Target,
    requests: int,
    seed: int,
    concurrency: int,
) -> list[Outcome]:
    """``requests`` cases, drawn in order from one seeded generator (deterministic) and
    sent by ``concurrency`` workers; each outcome keeps its case without the bytes."""
    fuzzer = Fuzzer(random.Random(seed), target, admitted)
    cases = (fuzzer.case() for _ in range(requests))  # shared: asyncio draws one at a time
    calls = {who: RawCalls(channel) for who, channel in channels.items()}
    outcomes: list[Outcome] = []

    async def worker() -> None:
        for case in cases:
            code, details = await send(calls[case.who], case)
            outcomes.append(Outcome(replace(case, parts=()), code, details))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


async def _honest_round(
    report: FuzzReport,
    listeners: Mapping[str, Listener],
    target: Target,
    coordinator: CoordinatorProcess,
) -> None:
    """Honest sites upload; admitted hostile sites decline what is left of their tasks;
    the round's model must be the honest FedAvg."""
    honest = coordinator.pki.honest
    first = listeners[honest[0]].client
    payload = await first.download(target.model_sha256, size=target.model_size)
    base = decode(target.manifest, payload, sha256=target.model_sha256)
    updates = []
    for i, site in enumerate(honest):
        task, n = target.tasks[site], 10 * (i + 1)
        delta = honest_delta(target.manifest, seed=i)
        header, payload = update_for(task, delta, n)
        code, _ = await status_of(listeners[site].client.upload(header, payload, timeout=30))
        report.honest_receipts[site] = code.name
        updates.append((n, delta))
    for site in coordinator.pki.hostile:  # so the round need not wait for its deadline
        task = target.tasks[site]
        with contextlib.suppress(grpc.aio.AioRpcError):
            await listeners[site].client.decline(
                task_id=task.task_id, round=task.round, code="fuzz-done", reason="fuzzing over"
            )
    report.finished = await listeners[honest[0]].finished
    rounds = (coordinator.output_dir / "rounds.jsonl").read_text().splitlines()
    report.round_sites = json.loads(rounds[-1])["sites"]
    model = coordinator.model(target.tasks[honest[0]].round)
    expected = fedavg(base, updates)
    report.model_error = max(float(np.max(np.abs(model[k] - expected[k]))) for k in expected)


def print_report(report: FuzzReport, out: Callable[[str], Any] = print) -> None:
    out(f"seed {report.seed}: {len(report.outcomes)} requests in {report.fuzz_seconds:.1f} s")
    out("status histogram: " + ", ".join(f"{k} {v}" for k, v in report.histogram().most_common()))
    for key, counts in sorted(report.by_rpc().items()):
        out(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    out(
        f"coordinator RSS {report.rss_before / MiB:.1f} -> {report.rss_after / MiB:.1f} MiB "
        f"(growth {(report.rss_after - report.rss_before) / MiB:+.1f} MiB)"
    )
    out(f"alive {report.alive_after_fuzz}, serving {report.serving_after_fuzz}")
    out(f"honest uploads {report.honest_receipts}, finished {report.finished}")
    out(f"model error vs honest FedAvg {report.model_error}")
    statuses = Counter(site["status"] for site in report.round_sites)
    out("round tasks: " + ", ".join(f"{k} {v}" for k, v in statuses.most_common()))
    accepted = sorted(s["site"] for s in report.round_sites if s["status"] == "accepted")
    out(f"  accepted: {', '.join(accepted)}")
    violations = report.violations
    out(f"{len(violations)} calls ended outside their allowed statuses:")
    groups: dict[tuple[str, str, str, str], list[Outcome]] = {}
    for o in violations:
        why = re.sub(r"[0-9a-f]{8,}|\d+", "#", o.details)[:90]
        groups.setdefault((o.case.rpc, _kind_of_peer(o.case.who), o.code.name, why), []).append(o)
    for (rpc, who, code, why), members in sorted(groups.items(), key=lambda g: -len(g[1])):
        kinds = Counter(m.case.kind for m in members).most_common(3)
        out(f"  {len(members)} x {rpc} by {who}: {code} {why!r} (cases: {kinds})")
    out(f"wall {report.wall_seconds:.1f} s")
