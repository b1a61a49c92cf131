"""The JTFS transforms a loss holds: one per signal length and dtype, registered as submodules.

The dtype and device rule shared by :class:`~scrapl_graph.JTFSLoss` and
:class:`~scrapl_graph.SCRAPLLoss`:

- a loss is built in ``torch.get_default_dtype()`` (so a loss built under
  ``torch.set_default_dtype(torch.float64)`` computes in float64) on the CPU;
- given input of another real floating dtype, it follows the input: a
  transform of that dtype is built once (filters designed in float64 and
  rounded once) and kept;
- it computes on its own device: ``.to(device)`` moves every transform it
  holds, and input on another device is refused with a clear error;
- with learnable filters (``learnable`` in the JTFS configuration) it holds
  one transform, whose parameters an optimizer sees once: a second length
  or dtype is refused with a clear error.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..jtfs import JTFS


def _key(n: int, dtype: torch.dtype) -> str:
    return f"n{n}_{str(dtype).rsplit('.', 1)[-1]}"


class TransformCache(nn.Module):
    """JTFS transforms of one configuration, built on demand per length and dtype.

    Args:
        config: the JTFS arguments ``J, Q1, Q2, J_fr, Q_fr, T, F``.
        shape: the only accepted length, or None for any length.
        check_values: passed to every :class:`~scrapl_graph.JTFS`.
    """

    def __init__(self, config: Dict[str, Any], shape: Optional[int] = None, check_values: Optional[bool] = None):
        super().__init__()
        self.config = dict(config)
        # Learnable filters are one parameter set: the cache then holds a single transform.
        self.learnable = bool(self.config.get("learnable"))
        self.shape = shape
        self.check_values = check_values
        self.transforms = nn.ModuleDict()
        # Carries the module's device and dtype through .to() even when no transform is built yet.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        """The loss's own dtype: that of its construction or of its last ``.to(dtype)``."""
        return self._anchor.dtype

    def lengths(self) -> List[int]:
        """The signal lengths that have a transform."""
        return sorted({jtfs.N for jtfs in self.transforms.values()})

    def get(self, n: int, dtype: Optional[torch.dtype] = None) -> JTFS:
        """The transform for ``n`` samples in ``dtype`` (default: the loss's), on the loss's device.

        Raises:
            ValueError: for a length other than ``shape``, or one the JTFS
                configuration does not fit (e.g. below ``2**J``).
        """
        if self.shape is not None and n != self.shape:
            raise ValueError(f"signals have {n} samples, expected shape={self.shape}: the loss was built "
                             f"for one length")
        dtype = self.dtype if dtype is None else dtype
        key = _key(n, dtype)
        jtfs = self.transforms[key] if key in self.transforms else None
        if self.learnable and len(self.transforms):
            built = next(iter(self.transforms.values()))
            if built.N == n and built.dtype == dtype:  # also after a .to(dtype) of the whole loss
                return built
            raise ValueError(f"this loss has learnable filters, one parameter set held by one transform "
                             f"(built for {built.N} samples in {built.dtype}); got {n} samples in {dtype}: "
                             f"give it signals of that length and dtype")
        if jtfs is None or jtfs.dtype != dtype:
            # A .to(dtype) of the whole module may have converted a stored
            # transform: rebuild rather than use rounded filters.
            try:
                jtfs = JTFS(n, **self.config, dtype=dtype, check_values=self.check_values)
            except ValueError as err:
                raise ValueError(f"signals of {n} samples do not fit this loss's JTFS: {err}") from None
            self.transforms[key] = jtfs.to(self.device)
        return jtfs
