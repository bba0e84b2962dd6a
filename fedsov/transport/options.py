"""gRPC channel and server options shared by both ends."""

from __future__ import annotations

__all__ = [
    "CLIENT_OPTIONS",
    "INSECURE_NAME_HEADER",
    "MAX_MESSAGE_BYTES",
    "PLAN_HEADER",
    "REASON_KEY",
    "SERVER_OPTIONS",
]

# Chunks are 1 MiB by default; a message may carry at most 4 MiB plus framing.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024

# Keepalive pings every 10 s, dead after 5 s without an answer: both ends notice a
# dead peer within ~15 s even on an idle task stream.
CLIENT_OPTIONS: list[tuple[str, int | str]] = [
    # Each reconnect attempt dials anew: a subchannel shared across channels would keep
    # gRPC's own backoff (up to 120 s) after a network drop, on top of the participant's.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

SERVER_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.http2.bdp_probe", 0),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

# Only read with --insecure (local development): there is no certificate then.
INSECURE_NAME_HEADER = "fedsov-insecure-node-name"
# Every call of a node started with a federation plan carries the plan's SHA-256.
PLAN_HEADER = "fedsov-plan-sha256"
# Trailing metadata of every refusal: a kebab-case reason a program can act on.
REASON_KEY = "fedsov-reason"
