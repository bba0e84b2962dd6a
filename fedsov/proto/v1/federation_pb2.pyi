from fedsov.proto.v1 import tensors_pb2 as _tensors_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SecAggStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SECAGG_STAGE_UNSPECIFIED: _ClassVar[SecAggStage]
    SECAGG_STAGE_ADVERTISE: _ClassVar[SecAggStage]
    SECAGG_STAGE_SHARE: _ClassVar[SecAggStage]
    SECAGG_STAGE_UNMASK: _ClassVar[SecAggStage]
    SECAGG_STAGE_REVEAL: _ClassVar[SecAggStage]
SECAGG_STAGE_UNSPECIFIED: SecAggStage
SECAGG_STAGE_ADVERTISE: SecAggStage
SECAGG_STAGE_SHARE: SecAggStage
SECAGG_STAGE_UNMASK: SecAggStage
SECAGG_STAGE_REVEAL: SecAggStage

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
    __slots__ = ("task_id", "round", "model_sha256", "model_size", "manifest", "plan", "deadline_unix", "round_seed", "secure")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    ROUND_SEED_FIELD_NUMBER: _ClassVar[int]
    SECURE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round: int
    model_sha256: str
    model_size: int
    manifest: _tensors_pb2.Manifest
    plan: TrainingPlan
    deadline_unix: float
    round_seed: int
    secure: SecAggParams
    def __init__(self, task_id: _Optional[str] = ..., round: _Optional[int] = ..., model_sha256: _Optional[str] = ..., model_size: _Optional[int] = ..., manifest: _Optional[_Union[_tensors_pb2.Manifest, _Mapping]] = ..., plan: _Optional[_Union[TrainingPlan, _Mapping]] = ..., deadline_unix: _Optional[float] = ..., round_seed: _Optional[int] = ..., secure: _Optional[_Union[SecAggParams, _Mapping]] = ...) -> None: ...

class SecAggParams(_message.Message):
    __slots__ = ("threshold", "neighbours", "ring_bits", "precision_bits", "clip", "weighted", "stage_timeout_s")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    RING_BITS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_BITS_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_FIELD_NUMBER: _ClassVar[int]
    STAGE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    threshold: int
    neighbours: int
    ring_bits: int
    precision_bits: int
    clip: float
    weighted: bool
    stage_timeout_s: float
    def __init__(self, threshold: _Optional[int] = ..., neighbours: _Optional[int] = ..., ring_bits: _Optional[int] = ..., precision_bits: _Optional[int] = ..., clip: _Optional[float] = ..., weighted: bool = ..., stage_timeout_s: _Optional[float] = ...) -> None: ...

class SecAggKeys(_message.Message):
    __slots__ = ("name", "cipher_key", "mask_key", "commitment")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CIPHER_KEY_FIELD_NUMBER: _ClassVar[int]
    MASK_KEY_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    cipher_key: bytes
    mask_key: bytes
    commitment: bytes
    def __init__(self, name: _Optional[str] = ..., cipher_key: _Optional[bytes] = ..., mask_key: _Optional[bytes] = ..., commitment: _Optional[bytes] = ...) -> None: ...

class SealedShare(_message.Message):
    __slots__ = ("peer", "ciphertext")
    PEER_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    peer: str
    ciphertext: bytes
    def __init__(self, peer: _Optional[str] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class RevealedShare(_message.Message):
    __slots__ = ("owner", "mask_key", "value")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    MASK_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    owner: str
    mask_key: bool
    value: bytes
    def __init__(self, owner: _Optional[str] = ..., mask_key: bool = ..., value: _Optional[bytes] = ...) -> None: ...

class SecAggRequest(_message.Message):
    __slots__ = ("task_id", "round", "stage", "keys", "shares", "reveals")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    REVEALS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    round: int
    stage: SecAggStage
    keys: SecAggKeys
    shares: _containers.RepeatedCompositeFieldContainer[SealedShare]
    reveals: _containers.RepeatedCompositeFieldContainer[RevealedShare]
    def __init__(self, task_id: _Optional[str] = ..., round: _Optional[int] = ..., stage: _Optional[_Union[SecAggStage, str]] = ..., keys: _Optional[_Union[SecAggKeys, _Mapping]] = ..., shares: _Optional[_Iterable[_Union[SealedShare, _Mapping]]] = ..., reveals: _Optional[_Iterable[_Union[RevealedShare, _Mapping]]] = ...) -> None: ...

class SecAggReply(_message.Message):
    __slots__ = ("stage", "neighbours", "shares", "survivors", "dropped")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    stage: SecAggStage
    neighbours: _containers.RepeatedCompositeFieldContainer[SecAggKeys]
    shares: _containers.RepeatedCompositeFieldContainer[SealedShare]
    survivors: _containers.RepeatedScalarFieldContainer[str]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stage: _Optional[_Union[SecAggStage, str]] = ..., neighbours: _Optional[_Iterable[_Union[SecAggKeys, _Mapping]]] = ..., shares: _Optional[_Iterable[_Union[SealedShare, _Mapping]]] = ..., survivors: _Optional[_Iterable[str]] = ..., dropped: _Optional[_Iterable[str]] = ...) -> None: ...

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
