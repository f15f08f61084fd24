"""Keep freed large buffers in the process heap for reuse (glibc) instead of handing them back to the OS.

Why: glibc serves an allocation above its mmap threshold (dynamic, at most 32 MB) with a fresh mapping and
unmaps it on free, so every generation batch faults its large arrays in again page by page: ds1's
10,000 x 1104 decoder output (44 MB) costs ~11,000 page faults, ~17 ms, half as long as the matmul that
fills it, and at ds2 (6480 voxels) every batch x voxels array is above the threshold
(docs/studies/2026-11-30-generation-speed.md). `detsim-generate` and the generation benchmark call this
once (`generate.heap_buffers_mb`); the cost is that the process keeps its peak memory. Limit: glibc
reuses a freed block only if no small allocation was placed right after it; in detsim's processes the large
buffers came back fault-free, in a bare `python -c "import torch"` every other batch still faulted.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_buffers(limit_mb: int) -> bool:
    """Allocate buffers up to `limit_mb` MB from the heap and keep freed ones; True if the C library agreed.

    0 leaves the C library's defaults; a C library without glibc's mallopt (macOS, musl) is left alone.
    """
    if limit_mb <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    limit = int(limit_mb) << 20
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * limit))
