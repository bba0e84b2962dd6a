"""Masks: AES-CTR keystreams as ring elements, made chunk by chunk at any aligned offset."""

from __future__ import annotations

import numpy as np
import pytest

from fedsov.secagg.prg import CHUNK_ELEMENTS, MaskStream, add_mask

SEED = bytes(range(32))
OTHER = bytes(range(1, 33))
DTYPES = [np.dtype("<u4"), np.dtype("<u8")]
SIZE = 2 * CHUNK_ELEMENTS + 37  # three chunks, the last one partial


def whole_mask(dtype: np.dtype, seed: bytes = SEED, size: int = SIZE) -> np.ndarray:
    values = np.zeros(size, dtype=dtype)
    add_mask(values, MaskStream(dtype), seed, start=0, sign=+1)
    return values


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_chunk_at_an_offset_is_that_slice_of_the_whole_mask(dtype: np.dtype) -> None:
    whole = whole_mask(dtype)
    stream = MaskStream(dtype)
    per_block = 16 // dtype.itemsize  # elements per AES block
    for start, count in [
        (0, 5),
        (per_block, 3),
        (7 * per_block, 1000),
        (CHUNK_ELEMENTS - per_block, 2 * per_block),  # across the first chunk's end
        (CHUNK_ELEMENTS, CHUNK_ELEMENTS),
        (2 * CHUNK_ELEMENTS, 37),
    ]:
        chunk = stream.chunk(SEED, start, count).copy()
        assert chunk.dtype == dtype and len(chunk) == count
        np.testing.assert_array_equal(chunk, whole[start : start + count])


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_mask_from_an_offset_matches_the_whole(dtype: np.dtype) -> None:
    whole = whole_mask(dtype)
    start = CHUNK_ELEMENTS // 2  # aligned, not on a chunk boundary
    part = np.zeros(SIZE - start, dtype=dtype)
    add_mask(part, MaskStream(dtype), SEED, start=start, sign=+1)
    np.testing.assert_array_equal(part, whole[start:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_then_subtract_restores(dtype: np.dtype) -> None:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    original = rng.integers(0, info.max, size=SIZE, dtype=dtype, endpoint=True)
    values = original.copy()
    stream = MaskStream(dtype)
    add_mask(values, stream, SEED, start=0, sign=+1)
    assert np.count_nonzero(values == original) < 10  # masked: (almost) every element moved
    add_mask(values, stream, OTHER, start=0, sign=-1)
    add_mask(values, stream, SEED, start=0, sign=-1)
    add_mask(values, stream, OTHER, start=0, sign=+1)
    np.testing.assert_array_equal(values, original)


@pytest.mark.parametrize("dtype", DTYPES)
def test_masks_are_deterministic_and_seed_specific(dtype: np.dtype) -> None:
    a, b = whole_mask(dtype, size=4096), whole_mask(dtype, size=4096)
    np.testing.assert_array_equal(a, b)
    c = whole_mask(dtype, OTHER, size=4096)
    assert np.count_nonzero(a == c) < 5
    # the elements look uniform: the top bit is set about half the time
    top = (whole_mask(dtype) >> np.array(8 * dtype.itemsize - 1, dtype=dtype)).mean()
    assert abs(top - 0.5) < 0.01


def test_uint32_and_uint64_masks_are_the_same_keystream() -> None:
    small = whole_mask(np.dtype("<u4"), size=1024)
    large = whole_mask(np.dtype("<u8"), size=512)
    assert small.tobytes() == large.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_unaligned_or_oversized_chunks_are_refused(dtype: np.dtype) -> None:
    stream = MaskStream(dtype)
    with pytest.raises(ValueError):
        stream.chunk(SEED, 1, 4)  # not on a 16-byte boundary
    with pytest.raises(ValueError):
        stream.chunk(SEED, 0, CHUNK_ELEMENTS + 1)
