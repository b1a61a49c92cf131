"""Recycled CPU buffers for the first-order node's intermediates.

The first-order wavelet modulus of a SCRAPL step makes four buffers of
10-20 MB at the highest octave: the inverse FFT, its modulus, the whole
half spectrum before it is cut, and in the backward pass the modulus's
gradient. With glibc's default thresholds, memory freed at the end of a step
goes back to the system, and the next step's buffers are faulted in anew,
page by page (about 5 ms of a 60 ms step). The node hands those buffers
back here when it is done with them (at the end of the forward pass when
no gradient is needed, at the end of the backward pass otherwise), and the
next call takes them. Only buffers nothing else can reference are handed
back; at most :data:`PER_SHAPE` are kept per shape and :data:`SHAPES`
shapes per thread. CUDA's caching allocator already recycles memory: other
devices are not kept.

The price is memory held between steps: about the step's first-order
intermediates (75 MB for a batch of 4 at N=32768, ten times that at batch
32), which glibc would otherwise return to the system. :func:`clear` drops
them, for example before evaluation with other shapes.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional, Tuple

import torch
from torch import Tensor

from .ops import is_fake

#: Buffers kept per (shape, dtype) and thread: the target's forward and the estimate's.
PER_SHAPE = 2
#: (shape, dtype) pairs kept per thread; the least recently handed back go first.
SHAPES = 16

_local = threading.local()


def _free() -> OrderedDict:
    free = getattr(_local, "free", None)
    if free is None:
        free = _local.free = OrderedDict()
    return free


def take(shape: Tuple[int, ...], dtype: torch.dtype, like: Tensor) -> Optional[Tensor]:
    """An uninitialized CPU tensor of ``shape`` and ``dtype``, recycled where one is kept.

    None where ``like`` is not a CPU tensor with data (the caller's operation then allocates its
    own output, without the copy an ``out=`` argument costs there).
    """
    if like.device.type != "cpu" or is_fake(like):
        return None
    kept = _free().get((tuple(shape), dtype))
    return kept.pop() if kept else torch.empty(shape, dtype=dtype)


def give(*tensors: Optional[Tensor]) -> None:
    """Hand back buffers from :func:`take` (or fresh ones) that no one will read again."""
    for t in tensors:
        if t is None or t.device.type != "cpu" or is_fake(t) or t._base is not None or not t.is_contiguous():
            continue
        free = _free()
        key = (tuple(t.shape), t.dtype)
        kept = free.setdefault(key, [])
        free.move_to_end(key)
        if len(kept) < PER_SHAPE and all(k is not t for k in kept):
            kept.append(t)
        while len(free) > SHAPES:
            free.popitem(last=False)


def clear() -> None:
    """Drop this thread's kept buffers (their memory goes back to the allocator)."""
    _free().clear()
