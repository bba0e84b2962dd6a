"""Protocol messages as plain dataclasses; fedsov.transport.serde maps them to protobuf."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from fedsov.codec import EncodedTensors, Manifest, TensorSpec
from fedsov.config import TrainingPlan  # the [training] section is what a task carries

__all__ = [
    "AuditHead",
    "Finished",
    "Heartbeat",
    "NodeStatus",
    "ParticipantStatus",
    "PrivacyLevel",
    "PrivacyReport",
    "RevealedShare",
    "SealedShare",
    "SecAggKeys",
    "SecAggParams",
    "SecAggReply",
    "SecAggRequest",
    "SecAggStage",
    "TaskEvent",
    "TrainTask",
    "TrainingPlan",
    "UpdateHeader",
    "UploadReceipt",
    "header_from_json",
    "header_to_json",
]


@dataclass(frozen=True)
class SecAggParams:
    """How a round's secure aggregation runs (fedsov.secagg), as its task tells each site."""

    threshold: int  # t: shares of a site's secret needed to rebuild it; survivors needed
    neighbours: int  # k: each site masks with (and shares its secrets to) k others
    ring_bits: int  # 32 or 64: updates are summed in Z_(2^ring_bits)
    precision_bits: int  # the quantization step is clip·2^-precision_bits
    clip: float  # L2 norm each site clips its update to before quantizing
    weighted: bool  # the site multiplies its update by its example count (FedAvg)
    stage_timeout_s: float  # how long the aggregator waits at each key stage


@dataclass(frozen=True)
class TrainTask:
    task_id: str
    round: int
    model_sha256: str
    model_size: int
    manifest: Manifest
    plan: TrainingPlan
    deadline_unix: float
    round_seed: int
    secure: SecAggParams | None = None  # the round is securely aggregated


class SecAggStage(StrEnum):
    """The site's calls of a secure round (fedsov.secagg), in order."""

    ADVERTISE = "advertise"  # send public keys; answered with the neighbours' keys
    SHARE = "share"  # send sealed shares; answered with those sealed for this site
    UNMASK = "unmask"  # after the masked upload: answered with survivors and dropped
    REVEAL = "reveal"  # send the shares the survivors and dropped need


@dataclass(frozen=True)
class SecAggKeys:
    """A site's public keys for one round: X25519 for sealing shares and for pairwise
    masks, and the SHA-256 commitment to its self-mask seed."""

    name: str
    cipher_key: bytes
    mask_key: bytes
    commitment: bytes


@dataclass(frozen=True)
class SealedShare:
    """Shares of one site's secrets for another, AES-GCM sealed: ``peer`` is the
    recipient in a request, the sender in a reply."""

    peer: str
    ciphertext: bytes


@dataclass(frozen=True)
class RevealedShare:
    """A survivor's share of ``owner``'s self-mask seed, or of its mask key if
    ``owner`` dropped (``mask_key``): never both for one owner."""

    owner: str
    mask_key: bool
    value: bytes


@dataclass(frozen=True)
class SecAggRequest:
    task_id: str
    round: int
    stage: SecAggStage
    keys: SecAggKeys | None = None  # ADVERTISE (its name is the sender's, from its certificate)
    shares: tuple[SealedShare, ...] = ()  # SHARE
    reveals: tuple[RevealedShare, ...] = ()  # REVEAL


@dataclass(frozen=True)
class SecAggReply:
    stage: SecAggStage
    neighbours: tuple[SecAggKeys, ...] = ()  # ADVERTISE
    shares: tuple[SealedShare, ...] = ()  # SHARE
    survivors: tuple[str, ...] = ()  # UNMASK: whose masked update is in the sum
    dropped: tuple[str, ...] = ()  # UNMASK: who shared keys but sent no update


@dataclass(frozen=True)
class Finished:
    rounds: int
    model_sha256: str
    reason: str


@dataclass(frozen=True)
class Heartbeat:
    sent_unix: float


TaskEvent = TrainTask | Finished | Heartbeat


class PrivacyLevel(StrEnum):
    """What one ε of a site's update protects (docs/privacy.md, "Levels")."""

    SAMPLE = "sample"  # DP-SGD through fedsov's Opacus path: one record
    UPDATE = "update"  # the site clipped and noised its whole update: its whole dataset
    NONE = "none"  # no DP


@dataclass(frozen=True)
class PrivacyReport:
    enabled: bool
    epsilon: float
    delta: float
    noise_multiplier: float = 0.0
    max_grad_norm: float = 0.0  # the clip norm: per example (SAMPLE) or of the update (UPDATE)
    sample_rate: float = 0.0
    steps: int = 0
    total_steps: int = 0
    accountant: str = ""
    level: PrivacyLevel | None = None  # None: derived, SAMPLE if enabled else NONE

    def __post_init__(self) -> None:
        if self.level is not None:  # a string from JSON or the wire; ValueError if unknown
            object.__setattr__(self, "level", PrivacyLevel(self.level))

    @property
    def effective_level(self) -> PrivacyLevel:
        """``level``, or the one derived when it was not given."""
        if self.level is not None:
            return self.level
        return PrivacyLevel.SAMPLE if self.enabled else PrivacyLevel.NONE

    @property
    def sample_level(self) -> bool:
        """Whether the update carries sample-level DP (DP-SGD through fedsov)."""
        return self.effective_level is PrivacyLevel.SAMPLE


@dataclass(frozen=True)
class AuditHead:
    """The last record of a node's audit ledger: its seq and the SHA-256 of its line."""

    seq: int
    sha256: str


@dataclass(frozen=True)
class UpdateHeader:
    task_id: str
    round: int
    manifest: Manifest
    num_examples: int
    payload_size: int
    payload_sha256: str
    base_model_sha256: str
    privacy: PrivacyReport
    metrics: Mapping[str, float] = field(default_factory=dict)
    contributors: tuple[str, ...] = ()  # the sites behind the update (lineage)
    audit_head: AuditHead | None = None  # the sender's ledger head, kept by the upstream
    # Base64 signature of fedsov.audit.statement over the contributors and audit head.
    contributors_signature: str = ""

    @classmethod
    def answering(
        cls,
        task: TrainTask,
        update: EncodedTensors,
        *,
        num_examples: int,
        privacy: PrivacyReport,
        contributors: tuple[str, ...] = (),
        metrics: Mapping[str, float] | None = None,
    ) -> UpdateHeader:
        """The header of ``update``, the answer to ``task`` (its round, task and model)."""
        return cls(
            task_id=task.task_id,
            round=task.round,
            manifest=update.manifest,
            num_examples=num_examples,
            payload_size=update.size,
            payload_sha256=update.sha256,
            base_model_sha256=task.model_sha256,
            privacy=privacy,
            metrics=dict(metrics or {}),
            contributors=contributors,
        )


@dataclass(frozen=True)
class UploadReceipt:
    task_id: str
    round: int
    payload_sha256: str
    bytes_received: int


def header_to_json(header: UpdateHeader) -> dict[str, Any]:
    """An update header as JSON-ready data (for the state store; never pickled)."""
    return {
        "task_id": header.task_id,
        "round": header.round,
        "manifest": [[t.name, t.dtype, list(t.shape)] for t in header.manifest.tensors],
        "num_examples": header.num_examples,
        "payload_size": header.payload_size,
        "payload_sha256": header.payload_sha256,
        "base_model_sha256": header.base_model_sha256,
        "privacy": asdict(header.privacy),
        "metrics": dict(header.metrics),
        "contributors": list(header.contributors),
        "audit_head": asdict(header.audit_head) if header.audit_head else None,
        "contributors_signature": header.contributors_signature,
    }


def header_from_json(data: Mapping[str, Any]) -> UpdateHeader:
    """The inverse of ``header_to_json``; KeyError/TypeError/CodecError on bad data."""
    manifest = Manifest(
        tuple(TensorSpec(str(n), str(d), tuple(int(x) for x in s)) for n, d, s in data["manifest"])
    )
    return UpdateHeader(
        task_id=str(data["task_id"]),
        round=int(data["round"]),
        manifest=manifest,
        num_examples=int(data["num_examples"]),
        payload_size=int(data["payload_size"]),
        payload_sha256=str(data["payload_sha256"]),
        base_model_sha256=str(data["base_model_sha256"]),
        privacy=PrivacyReport(**data["privacy"]),
        metrics={str(k): float(v) for k, v in data["metrics"].items()},
        contributors=tuple(str(c) for c in data.get("contributors", ())),
        audit_head=AuditHead(**data["audit_head"]) if data.get("audit_head") else None,
        contributors_signature=str(data.get("contributors_signature", "")),
    )


@dataclass(frozen=True)
class ParticipantStatus:
    """One participant as its upstream sees it (``fedsov status``)."""

    name: str
    jurisdiction: str = ""  # "" when the node does not know it
    connected: bool = False
    epsilon: float | None = None  # the ε it reported with its last accepted update
    budget: float | None = None  # its ε budget, from the plan
    last_status: str = ""  # its task's status in the last closed round


@dataclass(frozen=True)
class NodeStatus:
    """What a serving node (coordinator, regional aggregator) is doing now."""

    node: str
    role: str
    federation: str
    jurisdiction: str
    state: str  # "waiting for sites", "round 3 open", "finished: ..."
    round: int  # the round open now, else the last one run
    rounds_total: int  # 0: driven by an upstream
    participants: tuple[ParticipantStatus, ...]
    last_report: Mapping[str, Any] | None  # the last closed round, as rounds.jsonl has it
    uptime_s: float
    plan_sha256: str = ""
    model_sha256: str = ""
    stop_requested: str = ""  # why a stop was asked for; "" when none was

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"participants": [asdict(p) for p in self.participants]}
