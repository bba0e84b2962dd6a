"""The upstream side shared by sites and regional aggregators: connect, download,
decline, send (each audited once), and the residency guard before any of it."""

from fedsov.participant.guard import may_send
from fedsov.participant.loop import Backoff, TaskHandler, serve_upstream
from fedsov.participant.upstream import FATAL, Upstream

__all__ = ["FATAL", "Backoff", "TaskHandler", "Upstream", "may_send", "serve_upstream"]
