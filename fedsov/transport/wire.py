"""The two bulk messages, ``ModelChunk`` and an ``UpdateChunk`` of data, without copies.

protobuf's Python messages copy a ``bytes`` field in (building) and out (reading), on
top of the copies gRPC makes: for a model that is moved a few times per round, that
was most of the event loop's time. These functions write and read those two messages
in their standard protobuf encoding (tag, varint, length-delimited bytes), the payload
joined once on the way out and viewed in place (a memoryview of gRPC's buffer) on the
way in. Anything but the plain form these writers produce is handed to protobuf
itself, so a peer gains nothing by sending another encoding: it is parsed, or
refused, exactly as protobuf would.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsov.proto.v1 import federation_pb2 as pb

__all__ = [
    "ModelPart",
    "encode_model_chunk",
    "encode_update_data",
    "parse_model_chunk",
    "parse_update_part",
    "serialize",
]

_MODEL_DATA_TAG = b"\x1a"  # field 3 (data), length-delimited
_UPDATE_DATA_TAG = 0x12  # field 2 (data), length-delimited
_OFFSET, _TOTAL, _DATA = 0x08, 0x10, 0x1A  # ModelChunk tags: fields 1, 2 varint; 3 bytes


@dataclass(frozen=True)
class ModelPart:
    """One ``ModelChunk`` as read: ``data`` views the received message (no copy)."""

    offset: int
    total_size: int
    data: memoryview


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: memoryview, pos: int) -> tuple[int, int] | None:
    """(value, next position), or None if there is no well-formed varint at ``pos``."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(raw))):
        byte = raw[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value, i + 1) if value < 1 << 64 else None
        shift += 7
    return None


def encode_model_chunk(offset: int, total_size: int, data: memoryview | bytes) -> bytes:
    """A serialized ``ModelChunk``, the payload copied once (into the result)."""
    head = pb.ModelChunk(offset=offset, total_size=total_size).SerializeToString()
    if not data:  # proto3 leaves out an empty field
        return head
    return b"".join((head, _MODEL_DATA_TAG, _varint(len(data)), data))


def encode_update_data(data: memoryview | bytes) -> bytes:
    """A serialized ``UpdateChunk`` carrying ``data``, copied once."""
    return b"".join((bytes((_UPDATE_DATA_TAG,)), _varint(len(data)), data))


def serialize(message: pb.ModelChunk | pb.UpdateChunk | bytes) -> bytes:
    """gRPC's serializer for streams that carry messages or already serialized ones."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def parse_model_chunk(raw: bytes) -> ModelPart:
    """A received ``ModelChunk``; DecodeError (protobuf's) if it is not one."""
    view, pos, fields = memoryview(raw), 0, {_OFFSET: 0, _TOTAL: 0}
    data = view[:0]
    while pos < len(view):
        tag = view[pos]
        read = _read_varint(view, pos + 1)
        if tag not in (_OFFSET, _TOTAL, _DATA) or read is None:
            return _model_part(raw)
        value, pos = read
        if tag == _DATA:
            if pos + value > len(view):
                return _model_part(raw)
            data, pos = view[pos : pos + value], pos + value
        else:
            fields[tag] = value
    return ModelPart(fields[_OFFSET], fields[_TOTAL], data)


def _model_part(raw: bytes) -> ModelPart:
    chunk = pb.ModelChunk.FromString(raw)
    return ModelPart(chunk.offset, chunk.total_size, memoryview(chunk.data))


def parse_update_part(raw: bytes) -> pb.UpdateChunk | memoryview:
    """A received ``UpdateChunk``: its data in place when that is all it holds (the
    common case), else the parsed message; DecodeError (protobuf's) if it is not one."""
    view = memoryview(raw)
    if len(view) > 1 and view[0] == _UPDATE_DATA_TAG:
        read = _read_varint(view, 1)
        if read is not None and read[1] + read[0] == len(view):
            return view[read[1] :]
    return pb.UpdateChunk.FromString(raw)
