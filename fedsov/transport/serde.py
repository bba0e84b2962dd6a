"""The one place that converts between protobuf messages and fedsov dataclasses."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from fedsov.codec import Manifest, TensorSpec
from fedsov.exceptions import CodecError, ConfigError, ProtocolError
from fedsov.messages import (
    AuditHead,
    Finished,
    Heartbeat,
    PrivacyReport,
    TaskEvent,
    TrainingPlan,
    TrainTask,
    UpdateHeader,
    UploadReceipt,
)
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import tensors_pb2 as tpb
from fedsov.transport.serde_secagg import params_from_proto, params_to_proto

__all__ = [
    "MAX_DECLINE_REASON_CHARS",
    "MAX_ID_CHARS",
    "MAX_METRICS",
    "decline_from_proto",
    "manifest_from_proto",
    "manifest_to_proto",
    "receipt_from_proto",
    "receipt_to_proto",
    "task_event_from_proto",
    "task_event_to_proto",
    "update_header_from_proto",
    "update_header_to_proto",
]

# Bounds on what a peer may make this node store or log.
MAX_METRICS = 32  # entries of an update header's metrics
MAX_ID_CHARS = 128  # a task id, a metric name, a decline code
MAX_DECLINE_REASON_CHARS = 1024  # longer decline reasons are cut, not refused

_DTYPE_TO_PROTO = {
    "float32": tpb.DTYPE_FLOAT32,
    "float64": tpb.DTYPE_FLOAT64,
    "float16": tpb.DTYPE_FLOAT16,
    "int64": tpb.DTYPE_INT64,
    "int32": tpb.DTYPE_INT32,
    "uint8": tpb.DTYPE_UINT8,
    "uint32": tpb.DTYPE_UINT32,
    "uint64": tpb.DTYPE_UINT64,
    "bool": tpb.DTYPE_BOOL,
}
_DTYPE_FROM_PROTO = {v: k for k, v in _DTYPE_TO_PROTO.items()}


def manifest_to_proto(manifest: Manifest) -> tpb.Manifest:
    return tpb.Manifest(
        tensors=[
            tpb.TensorSpec(name=s.name, dtype=_DTYPE_TO_PROTO[s.dtype], shape=list(s.shape))
            for s in manifest.tensors
        ]
    )


def manifest_from_proto(msg: tpb.Manifest) -> Manifest:
    specs = []
    for t in msg.tensors:
        dtype = _DTYPE_FROM_PROTO.get(t.dtype)
        if dtype is None:
            raise CodecError(f"tensor {t.name!r}: unknown dtype code {t.dtype}")
        specs.append(TensorSpec(t.name, dtype, tuple(int(d) for d in t.shape)))
    return Manifest(tuple(specs))


def task_event_to_proto(event: TaskEvent) -> pb.TaskEvent:
    if isinstance(event, TrainTask):
        return pb.TaskEvent(
            train=pb.TrainTask(
                task_id=event.task_id,
                round=event.round,
                model_sha256=event.model_sha256,
                model_size=event.model_size,
                manifest=manifest_to_proto(event.manifest),
                plan=pb.TrainingPlan(
                    local_epochs=event.plan.local_epochs,
                    batch_size=event.plan.batch_size,
                    learning_rate=event.plan.learning_rate,
                    momentum=event.plan.momentum,
                    proximal_mu=event.plan.proximal_mu,
                    evaluate=event.plan.evaluate,
                    evaluate_every=event.plan.evaluate_every,
                ),
                deadline_unix=event.deadline_unix,
                round_seed=event.round_seed,
                secure=None if event.secure is None else params_to_proto(event.secure),
            )
        )
    if isinstance(event, Finished):
        return pb.TaskEvent(
            finished=pb.Finished(
                rounds=event.rounds, model_sha256=event.model_sha256, reason=event.reason
            )
        )
    return pb.TaskEvent(heartbeat=pb.Heartbeat(sent_unix=event.sent_unix))


def task_event_from_proto(msg: pb.TaskEvent) -> TaskEvent:
    kind = msg.WhichOneof("event")
    if kind == "train":
        t = msg.train
        return TrainTask(
            task_id=t.task_id,
            round=t.round,
            model_sha256=t.model_sha256,
            model_size=t.model_size,
            manifest=manifest_from_proto(t.manifest),
            plan=_plan_from_proto(t.plan),
            deadline_unix=t.deadline_unix,
            round_seed=t.round_seed,
            secure=params_from_proto(t.secure) if t.HasField("secure") else None,
        )
    if kind == "finished":
        f = msg.finished
        return Finished(rounds=f.rounds, model_sha256=f.model_sha256, reason=f.reason)
    if kind == "heartbeat":
        return Heartbeat(sent_unix=msg.heartbeat.sent_unix)
    raise ProtocolError("task event carries no event")


def _plan_from_proto(p: pb.TrainingPlan) -> TrainingPlan:
    """The training plan a task asks for; one the config would refuse is a bad message."""
    try:
        return TrainingPlan(
            local_epochs=p.local_epochs,
            batch_size=p.batch_size,
            learning_rate=p.learning_rate,
            momentum=p.momentum,
            proximal_mu=p.proximal_mu,
            evaluate=p.evaluate,
            evaluate_every=p.evaluate_every or 1,  # 0: an older sender
        )
    except ConfigError as exc:
        raise ProtocolError(f"task's training plan: {exc}") from exc


def _privacy_to_proto(p: PrivacyReport) -> pb.PrivacyReport:
    return pb.PrivacyReport(**{**dataclasses.asdict(p), "level": p.level or ""})


def _privacy_from_proto(p: pb.PrivacyReport) -> PrivacyReport:
    fields = {f.name: getattr(p, f.name) for f in dataclasses.fields(PrivacyReport)}
    try:
        report = PrivacyReport(**{**fields, "level": p.level or None})
    except ValueError as exc:
        raise ProtocolError(f"privacy report: unknown level {p.level!r}") from exc
    if report.enabled and not (math.isfinite(report.epsilon) and report.epsilon >= 0):
        raise ProtocolError(f"privacy report: epsilon {report.epsilon} is not a finite ε >= 0")
    if report.enabled and not 0 < report.delta < 1:
        raise ProtocolError(f"privacy report: delta {report.delta} is not in (0, 1)")
    return report


def update_header_to_proto(h: UpdateHeader) -> pb.UpdateHeader:
    return pb.UpdateHeader(
        task_id=h.task_id,
        round=h.round,
        manifest=manifest_to_proto(h.manifest),
        num_examples=h.num_examples,
        payload_size=h.payload_size,
        payload_sha256=h.payload_sha256,
        base_model_sha256=h.base_model_sha256,
        privacy=_privacy_to_proto(h.privacy),
        metrics=dict(h.metrics),
        contributors=list(h.contributors),
        audit_checkpoint=(
            pb.AuditCheckpoint(seq=h.audit_head.seq, sha256=h.audit_head.sha256)
            if h.audit_head
            else None
        ),
        contributors_signature=h.contributors_signature,
    )


def _bounded(value: str, what: str, limit: int = MAX_ID_CHARS) -> str:
    if len(value) > limit:
        raise ProtocolError(f"{what} is {len(value)} characters long; at most {limit} allowed")
    return value


def _metrics_from_proto(metrics: Mapping[str, float]) -> dict[str, float]:
    """An update's metrics: at most MAX_METRICS finite values under short names."""
    if len(metrics) > MAX_METRICS:
        raise ProtocolError(f"update header has {len(metrics)} metrics; at most {MAX_METRICS}")
    for name, value in metrics.items():
        _bounded(name, "a metric name")
        if not math.isfinite(value):
            raise ProtocolError(f"metric {name!r} is {value}; metrics must be finite numbers")
    return dict(metrics)


def update_header_from_proto(h: pb.UpdateHeader) -> UpdateHeader:
    if not h.HasField("privacy"):
        raise ProtocolError("update header has no privacy report")
    return UpdateHeader(
        task_id=_bounded(h.task_id, "the task id"),
        round=h.round,
        manifest=manifest_from_proto(h.manifest),
        num_examples=h.num_examples,
        payload_size=h.payload_size,
        payload_sha256=h.payload_sha256,
        base_model_sha256=h.base_model_sha256,
        privacy=_privacy_from_proto(h.privacy),
        metrics=_metrics_from_proto(h.metrics),
        contributors=tuple(h.contributors),
        audit_head=(
            AuditHead(h.audit_checkpoint.seq, h.audit_checkpoint.sha256)
            if h.HasField("audit_checkpoint")
            else None
        ),
        contributors_signature=h.contributors_signature,
    )


def decline_from_proto(msg: pb.DeclineRequest) -> tuple[str, int, str, str]:
    """(task id, round, code, reason) of a decline; the reason cut to its bound."""
    reason = msg.reason
    if len(reason) > MAX_DECLINE_REASON_CHARS:
        reason = reason[: MAX_DECLINE_REASON_CHARS - 1] + "…"
    return (
        _bounded(msg.task_id, "the task id"),
        msg.round,
        _bounded(msg.code, "the decline code"),
        reason,
    )


def receipt_to_proto(r: UploadReceipt) -> pb.UploadReceipt:
    return pb.UploadReceipt(
        task_id=r.task_id,
        round=r.round,
        payload_sha256=r.payload_sha256,
        bytes_received=r.bytes_received,
    )


def receipt_from_proto(r: pb.UploadReceipt) -> UploadReceipt:
    return UploadReceipt(
        task_id=r.task_id,
        round=r.round,
        payload_sha256=r.payload_sha256,
        bytes_received=r.bytes_received,
    )
