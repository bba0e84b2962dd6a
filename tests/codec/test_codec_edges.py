"""Codec edges the round-trip tests do not reach: exact error texts, many tensors in one
chunk, and the safetensors header's exact bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from fedsov.codec import Manifest, PayloadReader, TensorSpec, decode, encode, iter_chunks
from fedsov.codec.safetensors_file import write_safetensors
from fedsov.exceptions import CodecError, ManifestMismatch, PayloadSizeError


def test_spec_errors_say_what_is_wrong() -> None:
    with pytest.raises(CodecError, match=r"^tensor name must not be empty$"):
        TensorSpec("", "float32", (1,))
    with pytest.raises(
        CodecError,
        match=r"^tensor 'w': unsupported dtype 'bf16' \(supported: bool, float16, float32, "
        r"float64, int32, int64, uint32, uint64, uint8\)$",
    ):
        TensorSpec("w", "bf16", (1,))
    with pytest.raises(CodecError, match=r"^tensor 'w': negative dimension in shape \(2, -1\)$"):
        TensorSpec("w", "float32", (2, -1))
    with pytest.raises(CodecError, match=r"^tensor 'z': unsupported dtype complex64$"):
        encode({"z": np.zeros(2, dtype=np.complex64)})
    with pytest.raises(CodecError, match=r"^chunk size must be positive, got -3$"):
        list(iter_chunks(b"abc", -3))


def test_manifest_mismatch_defaults_to_payload_and_names_an_order_change() -> None:
    a, b = TensorSpec("a", "float32", (1,)), TensorSpec("b", "float32", (1,))
    with pytest.raises(
        ManifestMismatch, match=r"^payload: tensors are in a different order than expected$"
    ):
        Manifest((b, a)).require_equal(Manifest((a, b)))
    with pytest.raises(ManifestMismatch, match=r"^model: missing tensor 'b'$"):
        Manifest((a,)).require_equal(Manifest((a, b)), what="model")


def test_an_oversized_chunk_reports_the_bytes_it_would_make() -> None:
    enc = encode({"w": np.zeros(4, dtype=np.float32)})  # 16 bytes
    reader = PayloadReader(enc.manifest, size=enc.size)
    list(reader.feed(enc.payload[:10]))
    with pytest.raises(PayloadSizeError, match=r"\(got 26 so far\)$"):
        reader.feed(enc.payload[:16])


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 9, 1 << 20])
def test_one_chunk_may_complete_many_tensors(chunk_size: int) -> None:
    """Five tensors (one empty) crossed by chunks of every size, a single chunk included."""
    arrays = {
        "a": np.array([1.5], dtype=np.float32),
        "b": np.array([2.5, -1.0], dtype=np.float32),
        "e": np.zeros(0, dtype=np.float32),
        "c": np.array([3], dtype=np.int64),
        "d": np.array([4.25, 5.0, 6.0], dtype=np.float64),
    }
    enc = encode(arrays)
    reader = PayloadReader(enc.manifest, size=enc.size, sha256=enc.sha256)
    got = {name: np.zeros_like(a) for name, a in arrays.items()}
    counts = dict.fromkeys(arrays, 0)
    for chunk in iter_chunks(enc.payload, chunk_size):
        for seg in reader.feed(chunk):
            assert seg.spec == enc.manifest.tensors[seg.index]
            got[seg.spec.name][seg.start : seg.start + len(seg.values)] = seg.values
            counts[seg.spec.name] += len(seg.values)
    reader.finish()
    assert counts == {name: a.size for name, a in arrays.items()}
    for name, a in arrays.items():
        np.testing.assert_array_equal(got[name], a)
    decoded = decode(enc.manifest, enc.payload)
    for name, a in arrays.items():
        np.testing.assert_array_equal(decoded[name], a)


def _header_of(path: Path) -> bytes:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return raw[8 : 8 + length]


def test_safetensors_header_is_compact_json_without_empty_metadata(tmp_path: Path) -> None:
    enc = encode({"w": np.zeros(2, dtype=np.float32), "n": np.zeros(1, dtype=np.int64)})
    path = tmp_path / "m.safetensors"
    write_safetensors(path, enc.manifest, enc.payload)
    header = _header_of(path)
    body = (
        b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
        b'"n":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}'
    )
    assert header.rstrip(b" ") == body
    assert json.loads(header) == json.loads(body)  # no "__metadata__" key when there is none


@pytest.mark.parametrize("name_length", range(1, 9))
def test_safetensors_data_starts_8_byte_aligned_whatever_the_header_length(
    tmp_path: Path, name_length: int
) -> None:
    enc = encode({"x" * name_length: np.arange(3, dtype=np.float32)})
    path = tmp_path / "m.safetensors"
    write_safetensors(path, enc.manifest, enc.payload)
    header = _header_of(path)
    assert (8 + len(header)) % 8 == 0
    assert len(header) - len(header.rstrip(b" ")) < 8  # padding, never a whole spare word
    assert path.read_bytes()[8 + len(header) :] == enc.payload


def test_a_spec_may_have_32_dimensions_and_no_more() -> None:
    assert TensorSpec("t", "float32", (1,) * 32).numel == 1
    with pytest.raises(CodecError, match=r"^tensor 't': 33 dimensions, at most 32 allowed$"):
        TensorSpec("t", "float32", (1,) * 33)


def test_a_spec_may_describe_up_to_the_largest_buffer_numpy_can_index() -> None:
    """intp's max bytes is the limit itself (shape only: nothing is allocated)."""
    largest = int(np.iinfo(np.intp).max)
    assert TensorSpec("t", "uint8", (largest,)).nbytes == largest
    with pytest.raises(CodecError, match=r"^tensor 't': shape \[4611686018427387904, 2\] is too"):
        TensorSpec("t", "uint8", (2**62, 2))
