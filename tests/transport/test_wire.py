"""The bulk messages' own encoding is protobuf's, both ways, for any bytes a peer sends."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import example, given
from hypothesis import strategies as st

from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.transport import wire

U64 = st.integers(min_value=0, max_value=2**64 - 1)


@given(offset=U64, total=U64, data=st.binary(max_size=3000))
@example(offset=0, total=0, data=b"")
@example(offset=2**64 - 1, total=2**63, data=b"\x1a" * 200)
def test_a_model_chunk_is_protobufs_encoding_and_reads_back_in_place(
    offset: int, total: int, data: bytes
) -> None:
    raw = wire.encode_model_chunk(offset, total, memoryview(data))
    assert raw == pb.ModelChunk(offset=offset, total_size=total, data=data).SerializeToString()
    part = wire.parse_model_chunk(raw)
    assert (part.offset, part.total_size, bytes(part.data)) == (offset, total, data)
    assert part.data.obj is raw or not data  # a view of the received bytes, not a copy


@given(data=st.binary(max_size=3000))
def test_an_update_data_chunk_is_protobufs_encoding_and_reads_back_in_place(data: bytes) -> None:
    raw = wire.encode_update_data(memoryview(data))
    assert raw == pb.UpdateChunk(data=data).SerializeToString()
    part = wire.parse_update_part(raw)
    assert isinstance(part, memoryview) and bytes(part) == data and part.obj is raw


def _protobuf(kind: type[pb.ModelChunk] | type[pb.UpdateChunk], raw: bytes) -> object:
    try:
        return kind.FromString(raw)
    except DecodeError:
        return DecodeError


@given(raw=st.binary(max_size=64))
@example(raw=b"\x1a\x05abc")  # data longer than the message
@example(raw=b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f")  # a varint past 64 bits
@example(raw=b"\x08\x01\x08\x02\x1a\x01a\x1a\x01b")  # repeated fields: the last wins
@example(raw=b"\x20\x01\x1a\x01a")  # an unknown field
def test_any_bytes_read_as_a_model_chunk_exactly_as_protobuf_reads_them(raw: bytes) -> None:
    expected = _protobuf(pb.ModelChunk, raw)
    if expected is DecodeError:
        with pytest.raises(DecodeError):
            wire.parse_model_chunk(raw)
        return
    assert isinstance(expected, pb.ModelChunk)
    part = wire.parse_model_chunk(raw)
    assert (part.offset, part.total_size, bytes(part.data)) == (
        expected.offset,
        expected.total_size,
        expected.data,
    )


@given(raw=st.binary(max_size=64))
@example(raw=b"\x12\x05abc")  # truncated
@example(raw=b"\x12\x01a\x12\x01b")  # two data fields: protobuf keeps the last
@example(raw=b"\x12\x01a\x0a\x00")  # data, then a header: the oneof holds the header
def test_any_bytes_read_as_an_update_chunk_exactly_as_protobuf_reads_them(raw: bytes) -> None:
    expected = _protobuf(pb.UpdateChunk, raw)
    if expected is DecodeError:
        with pytest.raises(DecodeError):
            wire.parse_update_part(raw)
        return
    assert isinstance(expected, pb.UpdateChunk)
    part = wire.parse_update_part(raw)
    if isinstance(part, memoryview):
        assert expected.WhichOneof("part") == "data" and bytes(part) == expected.data
    else:
        assert part == expected


def test_a_stream_of_messages_or_serialized_ones_is_serialized_as_protobuf() -> None:
    chunk = pb.ModelChunk(offset=3, total_size=9, data=b"abc")
    assert wire.serialize(chunk) == chunk.SerializeToString()
    assert wire.serialize(b"already") == b"already"
