"""The Operator service's messages: protobuf <-> ``NodeStatus`` (fedsov.messages)."""

from __future__ import annotations

import json

from fedsov.messages import NodeStatus, ParticipantStatus
from fedsov.proto.v1 import operator_pb2 as pb

__all__ = ["status_from_proto", "status_to_proto"]


def status_to_proto(status: NodeStatus) -> pb.StatusReply:
    return pb.StatusReply(
        node=status.node,
        role=status.role,
        federation=status.federation,
        jurisdiction=status.jurisdiction,
        state=status.state,
        round=status.round,
        rounds_total=status.rounds_total,
        participants=[
            pb.ParticipantStatus(
                name=p.name,
                jurisdiction=p.jurisdiction,
                connected=p.connected,
                epsilon=p.epsilon,
                budget=p.budget,
                last_status=p.last_status,
            )
            for p in status.participants
        ],
        last_report_json=json.dumps(status.last_report) if status.last_report else "",
        uptime_s=status.uptime_s,
        plan_sha256=status.plan_sha256,
        model_sha256=status.model_sha256,
        stop_requested=status.stop_requested,
    )


def status_from_proto(reply: pb.StatusReply) -> NodeStatus:
    return NodeStatus(
        node=reply.node,
        role=reply.role,
        federation=reply.federation,
        jurisdiction=reply.jurisdiction,
        state=reply.state,
        round=reply.round,
        rounds_total=reply.rounds_total,
        participants=tuple(
            ParticipantStatus(
                name=p.name,
                jurisdiction=p.jurisdiction,
                connected=p.connected,
                epsilon=p.epsilon if p.HasField("epsilon") else None,
                budget=p.budget if p.HasField("budget") else None,
                last_status=p.last_status,
            )
            for p in reply.participants
        ),
        last_report=json.loads(reply.last_report_json) if reply.last_report_json else None,
        uptime_s=reply.uptime_s,
        plan_sha256=reply.plan_sha256,
        model_sha256=reply.model_sha256,
        stop_requested=reply.stop_requested,
    )
