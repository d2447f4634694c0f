"""Keep freed memory inside the process on Linux, so that a CPU training step reuses its pages.

glibc's malloc serves a large request (above its mmap threshold: 128 KiB at start, adapting
upward) with freshly mapped pages, and gives them back to the kernel when the block is freed or
when the top of the heap grows past the trim threshold. A CPU training step allocates and frees
dozens of activation-sized tensors (100 x 16 x 32 x 32 floats is 6.5 MB), so each step pays for
mapping, zero-filling and unmapping them again. That cost grows with how much the step keeps alive
at once: Align-ada, which holds the frozen network's graph beside the current one, lost a third
of its step to it at width 16 (benchmarks/README.md).

``keep_freed_memory`` raises both thresholds once per process: blocks up to 32 MiB come from the
heap, and the heap is not trimmed, so the next step finds its pages already mapped. Only where
memory comes from changes, never a computed value; the process's resident size stays at its peak
instead of shrinking between steps. Elsewhere (macOS, Windows, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20                    # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1                   # an int: in effect, never trim

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds (once); True if they are in effect in this process."""
    global _done
    if _done is None:
        _done = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                mallopt = libc.mallopt
            except (OSError, AttributeError):  # not glibc
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _done
