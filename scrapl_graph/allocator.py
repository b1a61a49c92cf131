"""CPU allocator tuning: keep freed memory for reuse instead of returning it to the system.

On Linux with glibc, a tensor above the mmap threshold (128 kB to 32 MB,
adjusted dynamically) gets fresh pages from the kernel, and touching them
costs a page fault each; memory freed at the top of the heap is returned
above the trim threshold. A JTFS step allocates and frees tens of large
buffers, so those faults can take a fifth of a CPU step. Raising both
thresholds makes freed buffers reusable without faults, at the price of a
resident size that stays near its peak.

Nothing here runs on import: a library must not change its host process's
allocator. ``scrapl-graph --tune-malloc`` (or ``SCRAPL_GRAPH_TUNE_MALLOC=1``)
opts in for the command and the processes it spawns; in your own program,
call :func:`tune_malloc` once at start-up. The same settings can be given to
any program through glibc's environment, without code:
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=67108864``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt parameters of glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

ENV_VAR = "SCRAPL_GRAPH_TUNE_MALLOC"
_tuned = False


def tune_malloc(mmap_threshold: int = 32 * 2**20, trim_threshold: int = 2**30, top_pad: int = 64 * 2**20) -> bool:
    """Raise glibc's mmap and trim thresholds for this process (no effect elsewhere).

    Args:
        mmap_threshold: allocations above this size use mmap (glibc caps it at 32 MB).
        trim_threshold: free memory kept at the top of the heap before it is returned.
        top_pad: extra memory requested from the system at each heap extension.

    Returns:
        True if the settings were applied (glibc on Linux), else False.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad)))
    log.info("glibc malloc tuned (mmap threshold %d, trim threshold %d): %s", mmap_threshold, trim_threshold, ok)
    global _tuned
    _tuned = _tuned or ok
    return ok


def requested() -> bool:
    """Whether the environment asks for the tuning (``SCRAPL_GRAPH_TUNE_MALLOC`` set and not 0)."""
    return os.environ.get(ENV_VAR, "0") not in ("", "0")


def tune_malloc_if_requested() -> bool:
    """Apply :func:`tune_malloc` when :func:`requested`; used by the command and its worker processes."""
    return tune_malloc() if requested() else False


def is_tuned() -> bool:
    """Whether :func:`tune_malloc` succeeded in this process."""
    return _tuned
