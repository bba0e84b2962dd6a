"""Secure-aggregation messages <-> protobuf; every count and size a peer sends is bounded."""

from __future__ import annotations

import math

from fedsov.exceptions import ProtocolError
from fedsov.messages import (
    RevealedShare,
    SealedShare,
    SecAggKeys,
    SecAggParams,
    SecAggReply,
    SecAggRequest,
    SecAggStage,
)
from fedsov.proto.v1 import federation_pb2 as pb

__all__ = [
    "MAX_SECAGG_ITEMS",
    "params_from_proto",
    "params_to_proto",
    "reply_from_proto",
    "reply_to_proto",
    "request_from_proto",
    "request_to_proto",
]

MAX_SECAGG_ITEMS = 1024  # neighbours, shares or reveals in one message
_MAX_BYTES = 256  # one key, commitment, ciphertext or share
_MAX_NAME = 128

_STAGE_TO_PROTO = {
    SecAggStage.ADVERTISE: pb.SECAGG_STAGE_ADVERTISE,
    SecAggStage.SHARE: pb.SECAGG_STAGE_SHARE,
    SecAggStage.UNMASK: pb.SECAGG_STAGE_UNMASK,
    SecAggStage.REVEAL: pb.SECAGG_STAGE_REVEAL,
}
_STAGE_FROM_PROTO = {v: k for k, v in _STAGE_TO_PROTO.items()}


def params_to_proto(p: SecAggParams) -> pb.SecAggParams:
    return pb.SecAggParams(
        threshold=p.threshold,
        neighbours=p.neighbours,
        ring_bits=p.ring_bits,
        precision_bits=p.precision_bits,
        clip=p.clip,
        weighted=p.weighted,
        stage_timeout_s=p.stage_timeout_s,
    )


def params_from_proto(p: pb.SecAggParams) -> SecAggParams:
    if p.ring_bits not in (32, 64) or not 2 <= p.threshold <= MAX_SECAGG_ITEMS:
        raise ProtocolError(f"secure aggregation parameters out of range: {p}")
    if not (math.isfinite(p.clip) and p.clip > 0 and p.precision_bits <= 48):
        raise ProtocolError("secure aggregation: clip must be > 0, precision_bits <= 48")
    if not (math.isfinite(p.stage_timeout_s) and p.stage_timeout_s > 0):
        raise ProtocolError("secure aggregation: stage_timeout_s must be > 0")
    return SecAggParams(
        threshold=p.threshold,
        neighbours=min(p.neighbours, MAX_SECAGG_ITEMS),
        ring_bits=p.ring_bits,
        precision_bits=p.precision_bits,
        clip=p.clip,
        weighted=p.weighted,
        stage_timeout_s=p.stage_timeout_s,
    )


def _stage(value: int) -> SecAggStage:
    stage: SecAggStage | None = _STAGE_FROM_PROTO.get(value)  # type: ignore[call-overload]
    if stage is None:
        raise ProtocolError(f"secure aggregation: unknown stage {value}")
    return stage


def _bytes(value: bytes, what: str) -> bytes:
    if len(value) > _MAX_BYTES:
        raise ProtocolError(f"secure aggregation: {what} of {len(value)} bytes (max {_MAX_BYTES})")
    return bytes(value)


def _name(value: str) -> str:
    if not value or len(value) > _MAX_NAME:
        raise ProtocolError("secure aggregation: a site name is 1 to 128 characters")
    return value


def _count(items: object, what: str) -> None:
    if len(items) > MAX_SECAGG_ITEMS:  # type: ignore[arg-type]
        raise ProtocolError(f"secure aggregation: more than {MAX_SECAGG_ITEMS} {what}")


def _keys_to_proto(k: SecAggKeys) -> pb.SecAggKeys:
    return pb.SecAggKeys(
        name=k.name, cipher_key=k.cipher_key, mask_key=k.mask_key, commitment=k.commitment
    )


def _keys_from_proto(k: pb.SecAggKeys) -> SecAggKeys:
    return SecAggKeys(
        name=_name(k.name),
        cipher_key=_bytes(k.cipher_key, "a key"),
        mask_key=_bytes(k.mask_key, "a key"),
        commitment=_bytes(k.commitment, "a commitment"),
    )


def _shares_from_proto(shares: object) -> tuple[SealedShare, ...]:
    _count(shares, "shares")
    return tuple(
        SealedShare(_name(s.peer), _bytes(s.ciphertext, "a sealed share"))
        for s in shares  # type: ignore[attr-defined]
    )


def request_to_proto(r: SecAggRequest) -> pb.SecAggRequest:
    return pb.SecAggRequest(
        task_id=r.task_id,
        round=r.round,
        stage=_STAGE_TO_PROTO[r.stage],
        keys=_keys_to_proto(r.keys) if r.keys is not None else None,
        shares=[pb.SealedShare(peer=s.peer, ciphertext=s.ciphertext) for s in r.shares],
        reveals=[
            pb.RevealedShare(owner=v.owner, mask_key=v.mask_key, value=v.value) for v in r.reveals
        ],
    )


def request_from_proto(r: pb.SecAggRequest) -> SecAggRequest:
    if len(r.task_id) > _MAX_NAME:
        raise ProtocolError("secure aggregation: a task id is at most 128 characters")
    _count(r.reveals, "reveals")
    return SecAggRequest(
        task_id=r.task_id,
        round=r.round,
        stage=_stage(r.stage),
        keys=_keys_from_proto(r.keys) if r.HasField("keys") else None,
        shares=_shares_from_proto(r.shares),
        reveals=tuple(
            RevealedShare(_name(v.owner), v.mask_key, _bytes(v.value, "a share")) for v in r.reveals
        ),
    )


def reply_to_proto(r: SecAggReply) -> pb.SecAggReply:
    return pb.SecAggReply(
        stage=_STAGE_TO_PROTO[r.stage],
        neighbours=[_keys_to_proto(k) for k in r.neighbours],
        shares=[pb.SealedShare(peer=s.peer, ciphertext=s.ciphertext) for s in r.shares],
        survivors=list(r.survivors),
        dropped=list(r.dropped),
    )


def reply_from_proto(r: pb.SecAggReply) -> SecAggReply:
    for items, what in ((r.neighbours, "neighbours"), (r.survivors, "survivors")):
        _count(items, what)
    _count(r.dropped, "dropped")
    return SecAggReply(
        stage=_stage(r.stage),
        neighbours=tuple(_keys_from_proto(k) for k in r.neighbours),
        shares=_shares_from_proto(r.shares),
        survivors=tuple(_name(s) for s in r.survivors),
        dropped=tuple(_name(s) for s in r.dropped),
    )
