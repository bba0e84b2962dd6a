"""Properties of the wire form (fedsov.transport.serde) of the messages that carry manifests.

Any valid message survives SerializeToString and parsing unchanged. Any bytes at all,
and any protobuf a hostile peer can build, either parse into a valid message or are
refused with protobuf's DecodeError (raised while gRPC deserializes, before fedsov
sees the message) or with fedsov's ProtocolError or CodecError: never anything else.
Kept beside the codec's strategies, which draw the manifests these messages carry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from codec_strategies import task_events, update_headers, upload_receipts
from google.protobuf.message import DecodeError, Message
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from fedsov.exceptions import CodecError, ProtocolError
from fedsov.messages import TaskEvent, UpdateHeader, UploadReceipt
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import tensors_pb2 as tpb
from fedsov.transport import serde

FAST = settings(max_examples=50, deadline=None)


def _header_from_chunk(chunk: pb.UpdateChunk) -> UpdateHeader:
    """What the servicer does with an upload's first message."""
    if chunk.WhichOneof("part") != "header":
        raise ProtocolError("the first message of an upload must be its header")
    return serde.update_header_from_proto(chunk.header)


# Each message a peer sends, with the function its receiver parses it with.
PARSERS: dict[str, tuple[type[Message], Callable[[Any], object]]] = {
    "TaskEvent": (pb.TaskEvent, serde.task_event_from_proto),
    "UpdateChunk": (pb.UpdateChunk, _header_from_chunk),
    "UpdateHeader": (pb.UpdateHeader, serde.update_header_from_proto),
    "UploadReceipt": (pb.UploadReceipt, serde.receipt_from_proto),
    "Manifest": (tpb.Manifest, serde.manifest_from_proto),
}


def receive(kind: str, data: bytes) -> object:
    """Parse ``data`` as the receiver would: the message, or one of the documented errors."""
    message_type, parse = PARSERS[kind]
    try:
        message = message_type.FromString(data)
    except DecodeError:
        return None
    try:
        return parse(message)
    except (ProtocolError, CodecError) as exc:
        return exc


# ----- round trips -------------------------------------------------------------------


@FAST
@given(task_events)
def test_a_task_event_survives_the_wire(event: TaskEvent) -> None:
    wire = serde.task_event_to_proto(event).SerializeToString()
    assert serde.task_event_from_proto(pb.TaskEvent.FromString(wire)) == event


@FAST
@given(update_headers)
def test_an_update_header_survives_the_wire(header: UpdateHeader) -> None:
    wire = pb.UpdateChunk(header=serde.update_header_to_proto(header)).SerializeToString()
    assert receive("UpdateChunk", wire) == header


@FAST
@given(upload_receipts)
def test_an_upload_receipt_survives_the_wire(receipt: UploadReceipt) -> None:
    wire = serde.receipt_to_proto(receipt).SerializeToString()
    assert serde.receipt_from_proto(pb.UploadReceipt.FromString(wire)) == receipt


# ----- rejections --------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(PARSERS)), st.binary(max_size=64))
@example("UpdateChunk", b"")  # no part at all
@example("TaskEvent", b"")  # no event at all
@example("UpdateHeader", b"\x1a\x04\n\x02\x10\x63")  # a tensor of dtype code 99
def test_any_bytes_parse_or_are_refused_with_a_documented_error(kind: str, data: bytes) -> None:
    receive(kind, data)  # raises nothing else


@st.composite
def mutated_wire(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid message's bytes, then truncated, a byte flipped, or bytes inserted."""
    kind, wire = draw(
        st.one_of(
            task_events.map(
                lambda e: ("TaskEvent", serde.task_event_to_proto(e).SerializeToString())
            ),
            update_headers.map(
                lambda h: (
                    "UpdateChunk",
                    pb.UpdateChunk(header=serde.update_header_to_proto(h)).SerializeToString(),
                )
            ),
        )
    )
    data = bytearray(wire)
    at = draw(st.integers(0, len(data)))
    how = draw(st.sampled_from(["truncate", "flip", "insert"]))
    if how == "truncate":
        del data[at:]
    elif how == "flip" and at < len(data):
        data[at] ^= draw(st.integers(1, 255))
    else:
        data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return kind, bytes(data)


@FAST
@given(mutated_wire())
def test_damaged_messages_parse_or_are_refused_with_a_documented_error(
    case: tuple[str, bytes],
) -> None:
    receive(*case)


# A hostile peer's protobuf: every field set to whatever its type holds.
_int64s = st.one_of(st.integers(-3, 8), st.integers(-(2**63), 2**63 - 1))
_doubles = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1.0]))
_specs = st.builds(
    tpb.TensorSpec,
    name=st.text(alphabet="ab", max_size=2),  # empty and repeated names too
    dtype=st.one_of(st.integers(0, 8), st.integers(-(2**31), 2**31 - 1)),
    shape=st.lists(_int64s, max_size=4) | st.lists(st.just(1), min_size=30, max_size=70),
)
_privacy = st.builds(
    pb.PrivacyReport,
    enabled=st.booleans(),
    epsilon=_doubles,
    delta=_doubles,
    noise_multiplier=_doubles,
    level=st.sampled_from(["", "sample", "update", "none", "bogus"]),
)
hostile_headers = st.builds(
    pb.UpdateHeader,
    task_id=st.text(max_size=4),
    round=st.integers(0, 2**64 - 1),
    manifest=st.builds(tpb.Manifest, tensors=st.lists(_specs, max_size=3)),
    privacy=st.none() | _privacy,
)


_ITEMSIZE = {
    tpb.DTYPE_FLOAT32: 4,
    tpb.DTYPE_FLOAT64: 8,
    tpb.DTYPE_FLOAT16: 2,
    tpb.DTYPE_INT64: 8,
    tpb.DTYPE_INT32: 4,
    tpb.DTYPE_UINT8: 1,
    tpb.DTYPE_BOOL: 1,
}


def _manifest_is_bad(manifest: tpb.Manifest) -> bool:
    names = [t.name for t in manifest.tensors]
    return len(set(names)) < len(names) or any(
        not t.name
        or t.dtype not in _ITEMSIZE
        or any(d < 0 for d in t.shape)
        or len(t.shape) > 32  # numpy 1.x's limit
        or math.prod(d for d in t.shape if d) * _ITEMSIZE[t.dtype] > 2**63 - 1
        for t in manifest.tensors
    )


def _privacy_is_bad(p: pb.PrivacyReport) -> bool:
    eps_ok = math.isfinite(p.epsilon) and p.epsilon >= 0
    unknown_level = p.level not in ("", "sample", "update", "none")
    return unknown_level or (p.enabled and not (eps_ok and 0 < p.delta < 1))


@settings(max_examples=100, deadline=None)
@given(hostile_headers)
def test_a_hostile_update_header_is_refused_for_what_is_wrong_with_it(
    header: pb.UpdateHeader,
) -> None:
    """The oracle: no privacy report, then a bad manifest, then a bad report are refused,
    in that order; a header with none of these parses and survives the wire again."""
    result = receive("UpdateHeader", header.SerializeToString())
    event(type(result).__name__)
    if not header.HasField("privacy"):
        assert isinstance(result, ProtocolError), result
    elif _manifest_is_bad(header.manifest):
        assert isinstance(result, CodecError), result
    elif _privacy_is_bad(header.privacy):
        assert isinstance(result, ProtocolError), result
    else:
        assert isinstance(result, UpdateHeader), result
        again = serde.update_header_to_proto(result)  # bit for bit, NaNs and all
        assert again.SerializeToString(deterministic=True) == header.SerializeToString(
            deterministic=True
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("local_epochs", 0),
        ("learning_rate", -1.0),
        ("momentum", 1.0),
        ("proximal_mu", -0.5),
    ],
)
def test_a_task_whose_training_plan_the_config_refuses_is_a_bad_message(
    field: str, value: float
) -> None:
    plan = pb.TrainingPlan(local_epochs=1, batch_size=8, learning_rate=0.1, momentum=0.0)
    setattr(plan, field, value)
    wire = pb.TaskEvent(train=pb.TrainTask(task_id="t", round=1, plan=plan))
    with pytest.raises(ProtocolError, match=rf"task's training plan: training\.{field}"):
        serde.task_event_from_proto(wire)
