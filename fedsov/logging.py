"""Console logging shared by every role: rich on a terminal, plain lines in log files."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

__all__ = ["setup_logging"]


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
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for noisy in ("grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
