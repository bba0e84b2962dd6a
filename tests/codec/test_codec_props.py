"""Properties of the codec: any state dict, cut anywhere, streams back bit for bit, and
every corruption is refused with one of the codec's own errors (never numpy's)."""

from __future__ import annotations

import hashlib
import math
import re
import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from codec_strategies import (
    DTYPE_NAMES,
    FLOAT_NAMES,
    Encoded,
    arrays_for,
    chunk_cuts,
    encoded_payloads,
    manifests,
    names,
    shapes,
    split,
    state_dicts,
)
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from fedsov.codec import DTYPES, Manifest, PayloadReader, TensorSpec, decode, encode
from fedsov.codec.safetensors_file import write_safetensors
from fedsov.exceptions import (
    CodecError,
    ManifestMismatch,
    NonFiniteTensor,
    PayloadHashError,
    PayloadSizeError,
)
from fedsov.proto.v1 import tensors_pb2 as tpb
from fedsov.transport.serde import manifest_from_proto, manifest_to_proto

FAST = settings(max_examples=40, deadline=None)


def wire_bytes(a: np.ndarray) -> bytes:
    """What the codec must put on the wire for ``a``: its C-order little-endian bytes."""
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()


def stream(
    manifest: Manifest,
    chunks: list[memoryview],
    *,
    sha256: str | None = None,
    allow_nonfinite: bool = False,
) -> dict[str, bytearray]:
    """Feed ``chunks`` to a PayloadReader; each tensor's bytes rebuilt from the segments.

    Also checks the segments' bookkeeping: in order, contiguous, each element once.
    """
    reader = PayloadReader(
        manifest,
        size=sum(len(c) for c in chunks),
        sha256=sha256,
        allow_nonfinite=allow_nonfinite,
    )
    out = {spec.name: bytearray() for spec in manifest.tensors}
    last_index = 0
    for chunk in chunks:
        for seg in reader.feed(chunk):
            assert seg.index >= last_index
            assert manifest.tensors[seg.index] is seg.spec
            assert seg.values.dtype == seg.spec.numpy_dtype
            assert seg.start * seg.spec.itemsize == len(out[seg.spec.name])  # contiguous
            assert len(seg.values) > 0
            out[seg.spec.name] += seg.values.tobytes()
            last_index = seg.index
    reader.finish()
    return out


# ----- round trips -------------------------------------------------------------------


@FAST
@given(encoded_payloads())
def test_any_state_dict_cut_anywhere_streams_back_bit_for_bit(case: Encoded) -> None:
    enc = case.enc
    assert enc.manifest == Manifest.from_arrays(case.arrays)
    assert enc.manifest.names == tuple(case.arrays)
    assert enc.sha256 == hashlib.sha256(enc.payload).hexdigest()
    assert enc.size == enc.manifest.nbytes == sum(a.nbytes for a in case.arrays.values())

    rebuilt = stream(enc.manifest, case.chunks, sha256=enc.sha256)
    for name, a in case.arrays.items():
        assert bytes(rebuilt[name]) == wire_bytes(a)

    out = decode(enc.manifest, bytes(enc.payload), sha256=enc.sha256, expected=enc.manifest)
    assert list(out) == list(case.arrays)
    for spec, (name, a) in zip(enc.manifest.tensors, case.arrays.items(), strict=True):
        assert out[name].dtype == spec.numpy_dtype
        assert out[name].shape == a.shape
        assert out[name].tobytes() == wire_bytes(a)
        assert out[name].flags.writeable


@FAST
@given(encoded_payloads())
def test_the_reader_hashes_what_it_was_fed(case: Encoded) -> None:
    reader = PayloadReader(case.enc.manifest, size=case.enc.size)
    for chunk in case.chunks:
        list(reader.feed(chunk))
    reader.finish()
    assert reader.sha256 == case.enc.sha256
    assert reader.received == reader.size == case.enc.size


@FAST
@given(manifests(max_side=2**16))
def test_a_manifest_survives_its_protobuf_form(manifest: Manifest) -> None:
    wire = manifest_to_proto(manifest).SerializeToString()
    parsed = tpb.Manifest.FromString(wire)
    assert manifest_from_proto(parsed) == manifest
    assert manifest_from_proto(parsed).offsets == manifest.offsets


@settings(max_examples=25, deadline=None)
@given(state_dicts(max_tensors=4), st.dictionaries(names, st.text(max_size=8), max_size=2))
def test_a_safetensors_file_holds_the_payload_and_reads_back(
    arrays: dict[str, np.ndarray], metadata: dict[str, str]
) -> None:
    enc = encode(arrays)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        write_safetensors(path, enc.manifest, enc.payload, metadata=metadata)
        raw = path.read_bytes()
        loaded = load_file(str(path))
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert raw[8 + header_len :] == bytes(enc.payload)
    assert set(loaded) == set(arrays)
    for spec, (name, a) in zip(enc.manifest.tensors, arrays.items(), strict=True):
        assert loaded[name].dtype == spec.numpy_dtype
        assert loaded[name].shape == a.shape
        assert wire_bytes(loaded[name]) == wire_bytes(a)


# ----- rejections --------------------------------------------------------------------


@st.composite
def truncations(draw: st.DrawFn) -> tuple[Encoded, int]:
    case = draw(encoded_payloads().filter(lambda c: c.enc.size > 0))
    return case, draw(st.integers(0, case.enc.size - 1))


@FAST
@given(truncations(), st.data())
def test_a_payload_truncated_anywhere_is_refused(
    truncated: tuple[Encoded, int], data: st.DataObject
) -> None:
    case, keep = truncated
    enc = case.enc
    prefix = bytes(enc.payload[:keep])
    with pytest.raises(PayloadSizeError, match="truncated payload"):
        decode(enc.manifest, prefix, sha256=enc.sha256)
    reader = PayloadReader(enc.manifest, size=enc.size, sha256=enc.sha256)
    got = bytearray()
    for chunk in split(prefix, data.draw(chunk_cuts(keep))):
        for seg in reader.feed(chunk):
            got += seg.values.tobytes()
    assert prefix.startswith(bytes(got))  # what was yielded is what was sent, no more
    with pytest.raises(PayloadSizeError, match=rf"received {keep} of {enc.size} bytes"):
        reader.finish()


@FAST
@given(encoded_payloads(), st.binary(min_size=1, max_size=16), st.data())
def test_trailing_bytes_are_refused_before_they_are_yielded(
    case: Encoded, extra: bytes, data: st.DataObject
) -> None:
    enc = case.enc
    longer = bytes(enc.payload) + extra
    with pytest.raises(PayloadSizeError, match="oversized payload"):
        decode(enc.manifest, longer)
    reader = PayloadReader(enc.manifest, size=enc.size)
    fed = 0
    with pytest.raises(PayloadSizeError, match="oversized payload"):
        for chunk in split(longer, data.draw(chunk_cuts(len(longer)))):
            segments = reader.feed(chunk)  # refuses before a segment exists
            fed += len(chunk)
            list(segments)
    assert fed <= enc.size
    assert reader.received == fed


@FAST
@given(
    encoded_payloads().filter(lambda c: c.enc.size > 0),
    st.integers(min_value=0),
    st.integers(1, 255),
    st.booleans(),
)
def test_a_flipped_byte_is_refused(case: Encoded, where: int, mask: int, tolerant: bool) -> None:
    """With the non-finite check on, a flip may first show as a NaN; either way a CodecError."""
    enc = case.enc
    tampered = bytearray(enc.payload)
    tampered[where % enc.size] ^= mask
    chunks = split(tampered, case.cuts)
    expected = PayloadHashError if tolerant else (PayloadHashError, NonFiniteTensor)
    with pytest.raises(expected):
        decode(enc.manifest, bytes(tampered), sha256=enc.sha256, allow_nonfinite=tolerant)
    with pytest.raises(expected):
        stream(enc.manifest, chunks, sha256=enc.sha256, allow_nonfinite=tolerant)


# Bit patterns of non-finite values, by dtype: ±inf, the default NaN, a NaN with a
# payload and the sign bit set (a NaN is not only np.nan).
NON_FINITE = {
    "float16": [0x7C00, 0xFC00, 0x7E00, 0xFD01],
    "float32": [0x7F800000, 0xFF800000, 0x7FC00000, 0xFF800001],
    "float64": [0x7FF0 << 48, 0xFFF0 << 48, 0x7FF8 << 48, (0xFFF0 << 48) | 1],
}


@st.composite
def poisoned(draw: st.DrawFn) -> tuple[Encoded, str, int]:
    """A state dict holding one non-finite element in one float tensor, anywhere."""
    state = draw(state_dicts(max_tensors=4))
    dtype = draw(st.sampled_from(FLOAT_NAMES))
    name = draw(names.filter(lambda n: n not in state))
    shape = draw(shapes(max_side=6).filter(lambda s: math.prod(s) > 0))
    bad = draw(arrays_for(TensorSpec(name, dtype, shape)))
    flat = draw(st.integers(0, bad.size - 1))
    pattern = draw(st.sampled_from(NON_FINITE[dtype]))
    bits = np.array([pattern], dtype=f"<u{bad.itemsize}").view(DTYPES[dtype])
    bad.reshape(-1)[flat] = bits[0]
    items = list(state.items())
    items.insert(draw(st.integers(0, len(items))), (name, bad))
    state = dict(items)
    enc = encode(state)
    return Encoded(state, enc, draw(chunk_cuts(enc.size))), name, flat


@FAST
@given(poisoned())
def test_a_non_finite_value_in_any_float_dtype_and_chunk_is_refused(
    case: tuple[Encoded, str, int],
) -> None:
    encoded, name, flat = case
    enc = encoded.enc
    where = rf"tensor {re.escape(repr(name))} holds .* at element {flat}$"
    with pytest.raises(NonFiniteTensor, match=where):
        stream(enc.manifest, encoded.chunks, sha256=enc.sha256)
    with pytest.raises(NonFiniteTensor, match=where):
        decode(enc.manifest, bytes(enc.payload))
    # Where non-finite values are allowed (replaying a spool), they pass bit for bit.
    rebuilt = stream(enc.manifest, encoded.chunks, sha256=enc.sha256, allow_nonfinite=True)
    assert bytes(rebuilt[name]) == wire_bytes(encoded.arrays[name])


@st.composite
def mismatched(draw: st.DrawFn) -> tuple[Encoded, Manifest]:
    """An encoded state dict, and a manifest that differs from its own in one way."""
    case = draw(encoded_payloads(arrays=lambda: state_dicts(max_tensors=4)))
    specs = list(case.enc.manifest.tensors)
    kind = draw(st.sampled_from(["rename", "dtype", "shape", "drop", "add", "swap"]))
    if kind == "add" or not specs:
        extra = TensorSpec(
            draw(names.filter(lambda n: n not in case.enc.manifest.names)),
            draw(st.sampled_from(DTYPE_NAMES)),
            draw(shapes()),
        )
        specs.insert(draw(st.integers(0, len(specs))), extra)
    else:
        i = draw(st.integers(0, len(specs) - 1))
        s = specs[i]
        if kind == "rename":
            new = draw(names.filter(lambda n: n not in case.enc.manifest.names))
            specs[i] = TensorSpec(new, s.dtype, s.shape)
        elif kind == "dtype":
            specs[i] = TensorSpec(s.name, draw(st.sampled_from(DTYPE_NAMES)), s.shape)
        elif kind == "shape":
            specs[i] = TensorSpec(s.name, s.dtype, draw(shapes()))
        elif kind == "drop":
            del specs[i]
        else:
            j = draw(st.integers(0, len(specs) - 1))
            specs[i], specs[j] = specs[j], specs[i]
    other = Manifest(tuple(specs))
    assume(other != case.enc.manifest)
    return case, other


@FAST
@given(mismatched())
def test_a_manifest_that_differs_is_refused(case: tuple[Encoded, Manifest]) -> None:
    encoded, other = case
    enc = encoded.enc
    with pytest.raises(ManifestMismatch, match=r"^payload: "):
        decode(other, bytes(enc.payload), expected=enc.manifest)
    with pytest.raises(ManifestMismatch):
        other.require_equal(enc.manifest)
    with pytest.raises(ManifestMismatch):
        enc.manifest.require_equal(other)
    # Read against the other manifest, the payload's size alone may give it away.
    if other.nbytes != enc.size:
        with pytest.raises(PayloadSizeError):
            decode(other, bytes(enc.payload))


# Declared dimensions: small, large, and as large as the wire's int64 allows.
DIMS = st.one_of(st.integers(0, 8), st.integers(0, 2**20), st.integers(0, 2**63 - 1))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(names, st.sampled_from(DTYPE_NAMES), st.lists(DIMS, max_size=4)),
        min_size=1,
        max_size=3,
        unique_by=lambda t: t[0],
    ),
    st.integers(0, 64),
)
def test_declared_sizes_allocate_nothing(
    specs: list[tuple[str, str, list[int]]], payload_size: int
) -> None:
    """Whatever shapes a peer declares, the receiver refuses a payload of another size
    before it allocates anything for it; a spec numpy could not build is a CodecError."""
    try:
        manifest = Manifest(tuple(TensorSpec(n, d, tuple(s)) for n, d, s in specs))
    except CodecError:
        return
    assume(manifest.nbytes != payload_size)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadSizeError):
            decode(manifest, bytes(payload_size))
        with pytest.raises(PayloadSizeError):
            PayloadReader(manifest, size=payload_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@st.composite
def degenerate_shapes(draw: st.DrawFn) -> tuple[int, ...]:
    """Many dimensions, and huge ones next to a 0: tensors of few or no bytes."""
    shape = [1] * draw(st.integers(0, 70))
    for _ in range(draw(st.integers(0, 4))):
        shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(2, 4)))
    if draw(st.booleans()):
        shape.insert(draw(st.integers(0, len(shape))), 0)
        for _ in range(draw(st.integers(0, 3))):
            shape.insert(draw(st.integers(0, len(shape))), draw(st.integers(0, 2**63 - 1)))
    return tuple(shape)


@settings(max_examples=60, deadline=None)
@given(degenerate_shapes(), st.sampled_from(DTYPE_NAMES))
@example((1,) * 65, "float32")  # more dimensions than numpy allows: was numpy's ValueError
@example((0, 2**62), "float32")  # 0 bytes, but numpy refuses the shape: was ValueError
@example((2**40, 0, 2**40), "uint8")
def test_a_spec_the_codec_accepts_is_one_numpy_can_build(
    shape: tuple[int, ...], dtype: str
) -> None:
    """A manifest comes off the wire: whatever shape it declares, decode either builds
    it or the manifest is refused with a CodecError, never numpy's ValueError (a hostile
    upstream must not crash a site with a shape)."""
    proto = manifest_to_proto(Manifest((TensorSpec("t", dtype, ()),)))
    proto.tensors[0].shape.extend(shape)
    try:
        manifest = manifest_from_proto(tpb.Manifest.FromString(proto.SerializeToString()))
    except CodecError:
        return
    spec = manifest.tensors[0]
    assert spec.nbytes <= 1 << 16
    out = decode(manifest, bytes(spec.nbytes), allow_nonfinite=True)
    assert out["t"].shape == shape
    assert out["t"].dtype == DTYPES[dtype]
