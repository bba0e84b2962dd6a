from fedsov.proto.v1 import tensors_pb2 as _tensors_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JoinRequest(_message.Message):
    __slots__ = ("software_version", "device", "nonce")
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    software_version: str
    device: str
    nonce: bytes
    def __init__(self, software_version: _Optional[str] = ..., device: _Optional[str] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("federation", "node_name", "role", "jurisdiction", "current_round", "upstream_name", "upstream_jurisdiction", "upstream_certificate", "proof")
    FEDERATION_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ROUND_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_NAME_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    federation: str
    node_name: str
    role: str
    jurisdiction: str
    current_round: int
    upstream_name: str
    upstream_jurisdiction: str
    upstream_certificate: bytes
    proof: bytes
    def __init__(self, federation: _Optional[str] = ..., node_name: _Optional[str] = ..., role: _Optional[str] = ..., jurisdiction: _Optional[str] = ..., current_round: _Optional[int] = ..., upstream_name: _Optional[str] = ..., upstream_jurisdiction: _Optional[str] = ..., upstream_certificate: _Optional[bytes] = ..., proof: _Optional[bytes] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrainingPlan(_message.Message):
    __slots__ = ("local_epochs", "batch_size", "learning_rate", "momentum", "proximal_mu", "evaluate", "evaluate_every")
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MOMENTUM_FIELD_NUMBER: _ClassVar[int]
    PROXIMAL_MU_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_EVERY_FIELD_NUMBER: _ClassVar[int]
    local_epochs: int
    batch_size: int
    learning_rate: float
    momentum: float
    proximal_mu: float
    evaluate: bool
    evaluate_every: int
    def __init__(self, local_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., momentum: _Optional[float] = ..., proximal_mu: _Optional[float] = ..., evaluate: bool = ..., evaluate_every: _Optional[int] = ...) -> None: ...

class TrainTask(_message.Message):
    __slots__ = ("task_id", "round", "model_sha256", "model_size", "manifest", "plan", "deadline_unix", "round_seed")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    ROUND_SEED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round: int
    model_sha256: str
    model_size: int
    manifest: _tensors_pb2.Manifest
    plan: TrainingPlan
    deadline_unix: float
    round_seed: int
    def __init__(self, task_id: _Optional[str] = ..., round: _Optional[int] = ..., model_sha256: _Optional[str] = ..., model_size: _Optional[int] = ..., manifest: _Optional[_Union[_tensors_pb2.Manifest, _Mapping]] = ..., plan: _Optional[_Union[TrainingPlan, _Mapping]] = ..., deadline_unix: _Optional[float] = ..., round_seed: _Optional[int] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("rounds", "model_sha256", "reason")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rounds: int
    model_sha256: str
    reason: str
    def __init__(self, rounds: _Optional[int] = ..., model_sha256: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_unix",)
    SENT_UNIX_FIELD_NUMBER: _ClassVar[int]
    sent_unix: float
    def __init__(self, sent_unix: _Optional[float] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("train", "finished", "heartbeat")
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    train: TrainTask
    finished: Finished
    heartbeat: Heartbeat
    def __init__(self, train: _Optional[_Union[TrainTask, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("model_sha256", "offset")
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    model_sha256: str
    offset: int
    def __init__(self, model_sha256: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("offset", "total_size", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    total_size: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., total_size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PrivacyReport(_message.Message):
    __slots__ = ("enabled", "epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "steps", "total_steps", "accountant", "level")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    total_steps: int
    accountant: str
    level: str
    def __init__(self, enabled: bool = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., max_grad_norm: _Optional[float] = ..., sample_rate: _Optional[float] = ..., steps: _Optional[int] = ..., total_steps: _Optional[int] = ..., accountant: _Optional[str] = ..., level: _Optional[str] = ...) -> None: ...

class UpdateHeader(_message.Message):
    __slots__ = ("task_id", "round", "manifest", "num_examples", "payload_size", "payload_sha256", "base_model_sha256", "privacy", "metrics", "contributors", "audit_checkpoint", "contributors_signature")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round: int
    manifest: _tensors_pb2.Manifest
    num_examples: int
    payload_size: int
    payload_sha256: str
    base_model_sha256: str
    privacy: PrivacyReport
    metrics: _containers.ScalarMap[str, float]
    contributors: _containers.RepeatedScalarFieldContainer[str]
    audit_checkpoint: AuditCheckpoint
    contributors_signature: str
    def __init__(self, task_id: _Optional[str] = ..., round: _Optional[int] = ..., manifest: _Optional[_Union[_tensors_pb2.Manifest, _Mapping]] = ..., num_examples: _Optional[int] = ..., payload_size: _Optional[int] = ..., payload_sha256: _Optional[str] = ..., base_model_sha256: _Optional[str] = ..., privacy: _Optional[_Union[PrivacyReport, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., contributors: _Optional[_Iterable[str]] = ..., audit_checkpoint: _Optional[_Union[AuditCheckpoint, _Mapping]] = ..., contributors_signature: _Optional[str] = ...) -> None: ...

class AuditCheckpoint(_message.Message):
    __slots__ = ("seq", "sha256")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    seq: int
    sha256: str
    def __init__(self, seq: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UpdateChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UpdateHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UpdateHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadReceipt(_message.Message):
    __slots__ = ("task_id", "round", "payload_sha256", "bytes_received")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round: int
    payload_sha256: str
    bytes_received: int
    def __init__(self, task_id: _Optional[str] = ..., round: _Optional[int] = ..., payload_sha256: _Optional[str] = ..., bytes_received: _Optional[int] = ...) -> None: ...

class DeclineRequest(_message.Message):
    __slots__ = ("task_id", "round", "code", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round: int
    code: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., round: _Optional[int] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeclineReceipt(_message.Message):
    __slots__ = ("task_id", "round")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round: int
    def __init__(self, task_id: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...
