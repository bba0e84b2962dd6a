"""Console logging shared by every role: rich on a terminal, plain lines in log files."""

from __future__ import annotations

import logging
import sys
import time

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["LEVELS", "RateLimitedLog", "parse_level", "setup_logging"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parse_level(value: str) -> str:
    """``value`` as one of ``LEVELS`` (any case); ValueError naming the valid ones."""
    level = value.upper()
    if level not in LEVELS:
        raise ValueError(f"log level {value!r} is not one of {', '.join(LEVELS)}")
    return level


def setup_logging(level: str = "INFO", *, role: str) -> None:
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(
            console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False
        )
        handler.setFormatter(logging.Formatter(f"[{role}] %(message)s"))
    else:  # one unwrapped line per record, easy to grep
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{role}] %(message)s"))
    logging.basicConfig(level=parse_level(level), handlers=[handler], force=True)
    for noisy in ("grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RateLimitedLog:
    """Log each kind of message at most once per ``interval`` seconds: a hostile peer
    repeating one bad request must not fill the operator's log. The next line of a
    kind says how many of it were held back."""

    def __init__(self, logger: logging.Logger, *, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        held = self._held.pop(kind, 0)
        self._last[kind] = now
        suffix = f" (and {held} more like it in the last {self.interval:.0f} s)" if held else ""
        self.logger.warning(message + suffix, *args)
