"""Protocol messages as plain dataclasses; fedsov.transport.serde maps them to protobuf."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fedsov.codec import Manifest

__all__ = [
    "Finished",
    "Heartbeat",
    "PrivacyReport",
    "TaskEvent",
    "TrainTask",
    "TrainingPlan",
    "UpdateHeader",
    "UploadReceipt",
]


@dataclass(frozen=True)
class TrainingPlan:
    local_epochs: int
    batch_size: int
    learning_rate: float
    momentum: float = 0.0


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


@dataclass(frozen=True)
class Finished:
    rounds: int
    model_sha256: str
    reason: str


@dataclass(frozen=True)
class Heartbeat:
    sent_unix: float


TaskEvent = TrainTask | Finished | Heartbeat


@dataclass(frozen=True)
class PrivacyReport:
    enabled: bool
    epsilon: float
    delta: float
    noise_multiplier: float = 0.0
    max_grad_norm: float = 0.0
    sample_rate: float = 0.0
    steps: int = 0
    total_steps: int = 0
    accountant: str = ""


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


@dataclass(frozen=True)
class UploadReceipt:
    task_id: str
    round: int
    payload_sha256: str
    bytes_received: int
