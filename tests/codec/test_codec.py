from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsov.codec import (
    Manifest,
    PayloadReader,
    TensorSpec,
    decode,
    encode,
    iter_chunks,
)
from fedsov.exceptions import (
    CodecError,
    ManifestMismatch,
    NonFiniteTensor,
    PayloadHashError,
    PayloadSizeError,
)


def sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fc1.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "fc1.bias": rng.standard_normal(4).astype(np.float64),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "steps": np.array([7, 9], dtype=np.int64),
    }


def test_round_trip_preserves_values_dtypes_and_order() -> None:
    arrays = sample()
    enc = encode(arrays)
    assert enc.manifest.names == tuple(arrays)
    assert enc.sha256 == hashlib.sha256(enc.payload).hexdigest()
    out = decode(enc.manifest, enc.payload, sha256=enc.sha256)
    for name, value in arrays.items():
        assert out[name].dtype == value.dtype
        np.testing.assert_array_equal(out[name], value)


def test_payload_is_little_endian_raw_bytes() -> None:
    enc = encode({"x": np.array([1.0], dtype=">f4")})
    assert enc.payload == np.array([1.0], dtype="<f4").tobytes()


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=97))
def test_any_chunking_yields_every_element_once(chunk_size: int) -> None:
    arrays = sample()
    enc = encode(arrays)
    reader = PayloadReader(enc.manifest, size=enc.size, sha256=enc.sha256)
    rebuilt = {s.name: np.zeros(s.numel, dtype=s.numpy_dtype) for s in enc.manifest.tensors}
    seen = {s.name: 0 for s in enc.manifest.tensors}
    for chunk in iter_chunks(enc.payload, chunk_size):
        for seg in reader.feed(chunk):
            rebuilt[seg.spec.name][seg.start : seg.start + len(seg.values)] = seg.values
            seen[seg.spec.name] += len(seg.values)
    reader.finish()
    for name, value in arrays.items():
        assert seen[name] == value.size
        np.testing.assert_array_equal(rebuilt[name].reshape(value.shape), value)


def test_truncated_payload_is_named() -> None:
    enc = encode(sample())
    with pytest.raises(PayloadSizeError, match="truncated payload: 10 bytes announced"):
        decode(enc.manifest, enc.payload[:10])
    reader = PayloadReader(enc.manifest, size=enc.size)
    list(reader.feed(enc.payload[:-4]))
    with pytest.raises(PayloadSizeError, match=rf"received {enc.size - 4} of {enc.size} bytes"):
        reader.finish()


def test_oversized_payload_is_refused_before_anything_is_yielded() -> None:
    enc = encode(sample())
    reader = PayloadReader(enc.manifest, size=enc.size)
    with pytest.raises(PayloadSizeError, match="oversized payload"):
        reader.feed(enc.payload + b"\0\0\0\0")
    with pytest.raises(PayloadSizeError, match="oversized payload"):
        decode(enc.manifest, enc.payload + b"\0")


def test_hash_mismatch_is_named() -> None:
    enc = encode(sample())
    tampered = bytearray(enc.payload)
    tampered[0] ^= 1
    with pytest.raises(PayloadHashError, match=f"announced {enc.sha256}"):
        decode(enc.manifest, bytes(tampered), sha256=enc.sha256)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_tensor_and_element(bad: float) -> None:
    arrays = sample()
    arrays["fc1.weight"][2, 1] = bad
    enc = encode(arrays)
    with pytest.raises(NonFiniteTensor, match=r"tensor 'fc1.weight' holds .* at element 7"):
        decode(enc.manifest, enc.payload)
    assert decode(enc.manifest, enc.payload, allow_nonfinite=True)["fc1.weight"][2, 1] != 0


def test_manifest_mismatch_names_the_difference() -> None:
    enc = encode(sample())
    wrong_shape = Manifest(
        tuple(
            TensorSpec(s.name, s.dtype, (3, 4)) if s.name == "fc1.weight" else s
            for s in enc.manifest.tensors
        )
    )
    with pytest.raises(
        ManifestMismatch, match=r"'fc1.weight' has shape \[4, 3\], expected \[3, 4\]"
    ):
        decode(enc.manifest, enc.payload, expected=wrong_shape)
    missing = Manifest(enc.manifest.tensors[1:])
    with pytest.raises(ManifestMismatch, match=r"unexpected tensor 'fc1\.weight'"):
        enc.manifest.require_equal(missing)
    with pytest.raises(ManifestMismatch, match=r"missing tensor 'fc1\.weight'"):
        missing.require_equal(enc.manifest)
    other_dtype = Manifest(
        tuple(
            TensorSpec(s.name, "float16", s.shape) if s.name == "fc1.bias" else s
            for s in enc.manifest.tensors
        )
    )
    with pytest.raises(ManifestMismatch, match=r"'fc1\.bias' has dtype float64, expected float16"):
        enc.manifest.require_equal(other_dtype)


def test_manifest_rejects_duplicates_and_unknown_dtypes() -> None:
    with pytest.raises(CodecError, match="appears twice"):
        Manifest((TensorSpec("a", "float32", (1,)), TensorSpec("a", "float32", (1,))))
    with pytest.raises(CodecError, match=r"unsupported dtype 'complex64'"):
        TensorSpec("a", "complex64", (1,))
    with pytest.raises(CodecError, match="unsupported dtype complex64"):
        encode({"z": np.zeros(2, dtype=np.complex64)})


def test_iter_chunks_resumes_from_offset() -> None:
    data = bytes(range(10))
    assert b"".join(iter_chunks(data, 3, offset=4)) == data[4:]
    with pytest.raises(CodecError):
        list(iter_chunks(data, 0))


def test_safetensors_file_is_readable_by_the_library_and_holds_the_payload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib as _hashlib
    import struct

    from safetensors import safe_open
    from safetensors.numpy import load_file

    from fedsov.codec.safetensors_file import write_safetensors

    arrays = {k: v for k, v in sample().items() if k != "empty"}
    enc = encode(arrays)
    path = tmp_path / "m.safetensors"
    write_safetensors(path, enc.manifest, enc.payload, metadata={"round": "3"})
    loaded = load_file(str(path))
    for name, value in arrays.items():
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].dtype == value.dtype
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"round": "3"}
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert (8 + header_len) % 8 == 0
    data = raw[8 + header_len :]
    assert _hashlib.sha256(data).hexdigest() == enc.sha256  # the data section is the payload


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("chunk_size", [7, 64, 1 << 20])
def test_non_finite_values_of_every_float_dtype_are_caught_in_any_chunk(
    dtype: type, chunk_size: int
) -> None:
    """Every float dtype is checked, and so is an element far into the payload, whichever
    chunk it arrives in (not only the first)."""
    arrays = {
        "head": np.zeros(40, dtype=np.int64),
        "w": np.zeros(300, dtype=dtype),
    }
    arrays["w"][257] = np.nan
    enc = encode(arrays)
    reader = PayloadReader(enc.manifest, size=enc.size, sha256=enc.sha256)
    with pytest.raises(NonFiniteTensor, match=r"tensor 'w' holds nan at element 257"):
        for chunk in iter_chunks(enc.payload, chunk_size=chunk_size):
            list(reader.feed(chunk))
        reader.finish()
