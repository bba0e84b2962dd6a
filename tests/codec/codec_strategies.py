"""Hypothesis strategies for the codec and the messages that carry its manifests.

Imported like a sibling module (``from codec_strategies import ...``), as pytest runs
the tests of this folder. Everything drawn here is *valid*: tests that need invalid
input derive it from these values, so that each rejection test knows what it broke.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedsov.codec import DTYPES, FLOAT_DTYPES, EncodedTensors, Manifest, TensorSpec, encode
from fedsov.messages import (
    AuditHead,
    Finished,
    Heartbeat,
    PrivacyLevel,
    PrivacyReport,
    TaskEvent,
    TrainingPlan,
    TrainTask,
    UpdateHeader,
    UploadReceipt,
)

DTYPE_NAMES = sorted(DTYPES)
FLOAT_NAMES = sorted(FLOAT_DTYPES)

# Any Unicode but surrogates (protobuf strings are UTF-8); "__metadata__" is the one name
# a safetensors header reserves.
names = st.text(min_size=1, max_size=12).filter(lambda s: s != "__metadata__")
uint32s = st.integers(min_value=0, max_value=2**32 - 1)
uint64s = st.integers(min_value=0, max_value=2**64 - 1)
# NaN is the one double that does not equal itself; every other double survives protobuf.
finite_doubles = st.floats(allow_nan=False, allow_infinity=False)


def shapes(*, max_dims: int = 3, max_side: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    """Scalars (``()``), empty tensors (a 0 anywhere) and small ones."""
    return st.lists(st.integers(0, max_side), max_size=max_dims).map(tuple)


def tensor_specs(*, max_side: int = 5) -> st.SearchStrategy[TensorSpec]:
    return st.builds(TensorSpec, names, st.sampled_from(DTYPE_NAMES), shapes(max_side=max_side))


def manifests(*, max_tensors: int = 5, max_side: int = 5) -> st.SearchStrategy[Manifest]:
    """Manifests of distinct names; ``max_side`` up to 2**16 stays within numpy's sizes."""
    return st.lists(
        tensor_specs(max_side=max_side), max_size=max_tensors, unique_by=lambda s: s.name
    ).map(lambda specs: Manifest(tuple(specs)))


def _elements(dtype: np.dtype[np.generic]) -> st.SearchStrategy[object]:
    if dtype.kind == "f":  # every finite value: subnormals, -0.0, the extremes
        return hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
    return hnp.from_dtype(dtype)


@st.composite
def arrays_for(draw: st.DrawFn, spec: TensorSpec) -> np.ndarray:
    """An array matching ``spec`` in either byte order (the codec writes little-endian)."""
    dtype = spec.numpy_dtype
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(draw(st.sampled_from("<>")))
    return draw(hnp.arrays(dtype, spec.shape, elements=_elements(dtype)))


@st.composite
def state_dicts(
    draw: st.DrawFn, *, max_tensors: int = 5, max_side: int = 5
) -> dict[str, np.ndarray]:
    """A model state: tensors of every supported dtype, finite, in a random order."""
    manifest = draw(manifests(max_tensors=max_tensors, max_side=max_side))
    return {spec.name: draw(arrays_for(spec)) for spec in manifest.tensors}


def chunk_cuts(size: int, *, max_cuts: int = 8) -> st.SearchStrategy[list[int]]:
    """Cut points in [0, size]: anywhere (repeats make empty chunks, which must be
    harmless), or every few bytes, so that most elements arrive in pieces."""
    return st.one_of(
        st.lists(st.integers(0, size), max_size=max_cuts).map(sorted),
        st.integers(1, 9).map(lambda step: list(range(step, size, step))),
    )


def split(data: bytes | bytearray, cuts: list[int]) -> list[memoryview]:
    """``data`` cut at ``cuts``: zero-copy views, like ``iter_chunks`` yields."""
    view = memoryview(bytes(data))
    bounds = [0, *cuts, len(view)]
    return [view[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class Encoded:
    """A state dict, its encoding, and chunk boundaries to stream it with."""

    arrays: dict[str, np.ndarray]
    enc: EncodedTensors
    cuts: list[int]

    @property
    def chunks(self) -> list[memoryview]:
        return split(self.enc.payload, self.cuts)


@st.composite
def encoded_payloads(
    draw: st.DrawFn,
    *,
    arrays: Callable[[], st.SearchStrategy[dict[str, np.ndarray]]] = state_dicts,
) -> Encoded:
    state = draw(arrays())
    enc = encode(state)
    return Encoded(state, enc, draw(chunk_cuts(enc.size)))


# ----- protocol messages (fedsov.messages), every field within its protobuf type --------


def _manifests_on_the_wire() -> st.SearchStrategy[Manifest]:
    return manifests(max_side=2**16)


# A TrainingPlan is validated when built (it is the [training] section): only valid plans.
positive_uint32s = st.integers(min_value=1, max_value=2**32 - 1)
training_plans = st.builds(
    TrainingPlan,
    positive_uint32s,
    positive_uint32s,
    st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
    st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    st.floats(min_value=0.0, allow_infinity=False),  # proximal_mu
    st.booleans(),  # evaluate
    positive_uint32s,  # evaluate_every
)

train_tasks = st.builds(
    TrainTask,
    task_id=st.text(max_size=20),
    round=uint64s,
    model_sha256=st.text(max_size=64),
    model_size=uint64s,
    manifest=_manifests_on_the_wire(),
    plan=training_plans,
    deadline_unix=finite_doubles,
    round_seed=uint64s,
)

task_events: st.SearchStrategy[TaskEvent] = st.one_of(
    train_tasks,
    st.builds(Finished, uint64s, st.text(max_size=64), st.text(max_size=40)),
    st.builds(Heartbeat, finite_doubles),
)


def _report(
    enabled: bool, epsilon: st.SearchStrategy[float], delta: st.SearchStrategy[float]
) -> st.SearchStrategy[PrivacyReport]:
    return st.builds(
        PrivacyReport,
        enabled=st.just(enabled),
        epsilon=epsilon,
        delta=delta,
        noise_multiplier=finite_doubles,
        max_grad_norm=finite_doubles,
        sample_rate=finite_doubles,
        steps=uint64s,
        total_steps=uint64s,
        accountant=st.text(max_size=12),
        level=st.one_of(st.none(), st.sampled_from(PrivacyLevel)),
    )


# What the receiver accepts: with DP on, ε finite >= 0 and δ in (0, 1); off, anything.
privacy_reports: st.SearchStrategy[PrivacyReport] = st.one_of(
    _report(False, finite_doubles, finite_doubles),
    _report(
        True,
        st.floats(min_value=0, allow_infinity=False),
        st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True),
    ),
)

audit_heads = st.builds(AuditHead, uint64s, st.text(max_size=64))

update_headers = st.builds(
    UpdateHeader,
    task_id=st.text(max_size=20),
    round=uint64s,
    manifest=_manifests_on_the_wire(),
    num_examples=uint64s,
    payload_size=uint64s,
    payload_sha256=st.text(max_size=64),
    base_model_sha256=st.text(max_size=64),
    privacy=privacy_reports,
    metrics=st.dictionaries(st.text(max_size=10), finite_doubles, max_size=4),
    contributors=st.lists(st.text(max_size=10), max_size=4).map(tuple),
    audit_head=st.none() | audit_heads,
)

upload_receipts = st.builds(
    UploadReceipt, st.text(max_size=20), uint64s, st.text(max_size=64), uint64s
)
