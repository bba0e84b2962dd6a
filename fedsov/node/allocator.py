"""glibc malloc settings for a long-running coordinator (Linux only; a no-op elsewhere).

gRPC's threads each get a malloc arena, and 1 MiB chunks freed by one thread are
kept for reuse in its arena, so resident memory creeps up with every upload. Two
arenas and a fixed 128 KiB mmap threshold (large buffers are returned to the OS
at once) keep the coordinator near O(model) while many sites upload together;
benchmarks/upload_memory.py measures it. The same as setting MALLOC_ARENA_MAX=2
and MALLOC_MMAP_THRESHOLD_=131072 before start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["tune_allocator"]

log = logging.getLogger("fedsov.node")

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_allocator(*, arenas: int = 2, mmap_threshold: int = 128 * 1024) -> bool:
    """Apply the settings; returns False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_ARENA_MAX, arenas)) and bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    log.debug("malloc tuned: %d arenas, mmap threshold %d bytes (%s)", arenas, mmap_threshold, ok)
    return ok
