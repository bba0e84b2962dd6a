from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ParticipantStatus(_message.Message):
    __slots__ = ("name", "jurisdiction", "connected", "epsilon", "budget", "last_status")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    jurisdiction: str
    connected: bool
    epsilon: float
    budget: float
    last_status: str
    def __init__(self, name: _Optional[str] = ..., jurisdiction: _Optional[str] = ..., connected: bool = ..., epsilon: _Optional[float] = ..., budget: _Optional[float] = ..., last_status: _Optional[str] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("node", "role", "federation", "jurisdiction", "state", "round", "rounds_total", "participants", "last_report_json", "uptime_s", "plan_sha256", "model_sha256", "stop_requested")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_FIELD_NUMBER: _ClassVar[int]
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    node: str
    role: str
    federation: str
    jurisdiction: str
    state: str
    round: int
    rounds_total: int
    participants: _containers.RepeatedCompositeFieldContainer[ParticipantStatus]
    last_report_json: str
    uptime_s: float
    plan_sha256: str
    model_sha256: str
    stop_requested: str
    def __init__(self, node: _Optional[str] = ..., role: _Optional[str] = ..., federation: _Optional[str] = ..., jurisdiction: _Optional[str] = ..., state: _Optional[str] = ..., round: _Optional[int] = ..., rounds_total: _Optional[int] = ..., participants: _Optional[_Iterable[_Union[ParticipantStatus, _Mapping]]] = ..., last_report_json: _Optional[str] = ..., uptime_s: _Optional[float] = ..., plan_sha256: _Optional[str] = ..., model_sha256: _Optional[str] = ..., stop_requested: _Optional[str] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class StopReply(_message.Message):
    __slots__ = ("accepted", "detail")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    detail: str
    def __init__(self, accepted: bool = ..., detail: _Optional[str] = ...) -> None: ...
