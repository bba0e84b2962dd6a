"""Every error a peer can trigger maps to a named status and reason (issue 13, item 7),
and serde bounds what a peer may make a node store (metrics, ids, decline reasons)."""

from __future__ import annotations

import grpc
import pytest

from fedsov.exceptions import (
    AccessDenied,
    FedsovError,
    LateUpdate,
    PKIError,
    ProtocolError,
    StateError,
    StreamStalled,
)
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.transport import serde
from fedsov.transport.errors import reason_for, status_for


@pytest.mark.parametrize(
    ("exc", "code", "reason"),
    [
        (PKIError("bad cert"), grpc.StatusCode.UNAUTHENTICATED, "bad-certificate"),
        (AccessDenied("no"), grpc.StatusCode.PERMISSION_DENIED, "not-admitted"),
        (LateUpdate("late"), grpc.StatusCode.DEADLINE_EXCEEDED, "late"),
        (StreamStalled("slow", reason="too-slow"), grpc.StatusCode.DEADLINE_EXCEEDED, "too-slow"),
        (ProtocolError("bad"), grpc.StatusCode.INVALID_ARGUMENT, "bad-request"),
        (StateError("ours"), grpc.StatusCode.INTERNAL, "internal"),  # our fault, not input
    ],
)
def test_errors_map_to_named_statuses(exc: FedsovError, code: grpc.StatusCode, reason: str) -> None:
    assert (status_for(exc), reason_for(exc)) == (code, reason)


def _header(**fields: object) -> pb.UpdateHeader:
    values: dict[str, object] = {"task_id": "t", "round": 1} | fields
    return pb.UpdateHeader(privacy=pb.PrivacyReport(), **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (_header(metrics={"loss": float("inf")}), "metrics must be finite"),
        (_header(metrics={f"m{i}": 1.0 for i in range(serde.MAX_METRICS + 1)}), "at most 32"),
        (_header(metrics={"x" * 200: 1.0}), "a metric name is 200 characters"),
        (_header(task_id="t" * 200), "the task id is 200 characters"),
    ],
)
def test_unbounded_headers_are_protocol_errors(header: pb.UpdateHeader, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        serde.update_header_from_proto(header)


def test_a_long_decline_reason_is_cut_to_its_bound() -> None:
    task_id, round, code, reason = serde.decline_from_proto(
        pb.DeclineRequest(task_id="t", round=2, code="budget", reason="x" * 2**20)
    )
    assert (task_id, round, code) == ("t", 2, "budget")
    assert len(reason) == serde.MAX_DECLINE_REASON_CHARS and reason.endswith("…")
    with pytest.raises(ProtocolError, match="decline code"):
        serde.decline_from_proto(pb.DeclineRequest(task_id="t", code="c" * 500))
