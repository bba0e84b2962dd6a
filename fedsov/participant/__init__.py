"""The upstream side shared by sites and regional aggregators: connect, download,
decline, send (each audited once), and the residency guard before any of it."""

from fedsov.participant.expect import UPSTREAM_ROLES, ExpectedUpstream
from fedsov.participant.guard import JoinCheck, may_join, may_send
from fedsov.participant.loop import TaskHandler, serve_upstream
from fedsov.participant.upstream import FATAL, Upstream

__all__ = [
    "FATAL",
    "UPSTREAM_ROLES",
    "ExpectedUpstream",
    "JoinCheck",
    "TaskHandler",
    "Upstream",
    "may_join",
    "may_send",
    "serve_upstream",
]
