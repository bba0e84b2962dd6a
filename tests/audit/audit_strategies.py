"""Hypothesis strategies for audit ledger lines: valid records, and ways to break them.

Imported like a sibling module, as pytest runs the tests of this folder.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

from fedsov.audit import AuditRecord

_EVENT = re.compile(r"[a-z][a-z0-9-]{0,63}")
HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
EVENTS = st.from_regex(_EVENT, fullmatch=True)
TEXT = st.text(min_size=1, max_size=12)  # any Unicode but lone surrogates
NUMBERS = st.one_of(
    st.integers(min_value=0),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
# JSON values a record's ``detail`` may hold: finite numbers, a few levels deep.
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
DETAILS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)

# Every field of a record, with the values its parser accepts.
VALID: dict[str, st.SearchStrategy[Any]] = {
    "v": st.just(1),
    "seq": st.integers(min_value=0),
    "time": TEXT,
    "node": TEXT,
    "jurisdiction": TEXT,
    "event": EVENTS,
    "round": st.none() | st.integers(min_value=0),
    "peer": st.none() | TEXT,
    "peer_jurisdiction": st.none() | TEXT,
    "plan_sha256": st.none() | HEX64,
    "content_sha256": st.none() | HEX64,
    "epsilon": st.none() | NUMBERS,
    "delta": st.none() | NUMBERS,
    "decision": st.none() | TEXT,
    "detail": DETAILS,
    "prev": HEX64,
    "key": TEXT,
    "sig": TEXT,
}
FIELDS = sorted(VALID)

records = st.fixed_dictionaries(VALID).map(lambda obj: AuditRecord(**obj))

# Values each field's parser must refuse (NaN and Infinity go through json's literals).
_NOT_JSON_STR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2)
)
_NOT_COUNT = st.one_of(
    st.booleans(),
    st.integers(max_value=-1),
    st.floats(),  # 1.0 included: an integer field takes no float
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
_BAD_STR = st.just("") | _NOT_JSON_STR.filter(lambda v: v is not None)
_BAD_HASH = st.one_of(
    st.text(max_size=70).filter(lambda s: not (len(s) == 64 and set(s) <= set("0123456789abcdef"))),
    HEX64.map(str.upper).filter(lambda s: s != s.lower()),
    st.integers(),
    st.booleans(),
)
_BAD_NUMBER = st.one_of(
    st.booleans(),
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    st.integers(max_value=-1),
    st.floats(max_value=-1e-300),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)
_DEEP = st.integers(33, 200).map(lambda n: json.loads("[" * n + "]" * n))
INVALID: dict[str, st.SearchStrategy[Any]] = {
    "v": _NOT_COUNT | st.none() | st.integers(min_value=2) | st.just(0),
    "seq": _NOT_COUNT | st.none(),
    "time": _BAD_STR | st.none(),
    "node": _BAD_STR | st.none(),
    "jurisdiction": _BAD_STR | st.none(),
    "event": st.text(max_size=70).filter(lambda s: not _EVENT.fullmatch(s)) | _NOT_JSON_STR,
    "round": _NOT_COUNT,
    "peer": _BAD_STR,
    "peer_jurisdiction": _BAD_STR,
    "plan_sha256": _BAD_HASH,
    "content_sha256": _BAD_HASH,
    "epsilon": _BAD_NUMBER,
    "delta": _BAD_NUMBER,
    "decision": _BAD_STR,
    "detail": st.one_of(
        _NOT_JSON_STR,
        st.text(max_size=4),
        st.sampled_from([float("nan"), float("inf")]).map(lambda x: {"x": [x]}),
        _DEEP.map(lambda deep: {"deep": deep}),
    ),
    "prev": _BAD_HASH | st.none(),
    "key": _BAD_STR | st.none(),
    "sig": _BAD_STR | st.none(),
}


def dumps(obj: dict[str, Any]) -> bytes:
    """A JSON line as a careless or hostile writer would make it (NaN allowed)."""
    return json.dumps(obj, ensure_ascii=False).encode()


# Lines that are not records at all.
GARBAGE_LINES = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
    st.text(max_size=40).map(lambda s: s.replace("\n", "").encode()),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"{}",
            b'"a string"',
            b"1e999",
            b"9" * 5000,  # more digits than Python will turn into an int
            b"NaN",
            b"-Infinity",
            b'{"seq": 1',  # truncated
            b'{"\\ud800": 1}',
            b"\xff\xfe{}",
            b"[" * 100_000,
            b'{"a":' * 5000,
        ]
    ),
)
