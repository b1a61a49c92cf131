"""The per-path distance shared by the SCRAPL and full-JTFS losses."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def compress(S: Tensor, log1p_eps: Optional[float]) -> Tensor:
    """rho(S) = log(1 + S / eps) when ``log1p_eps`` is set, else S."""
    return S if log1p_eps is None else torch.log1p(S / log1p_eps)


def path_distance(S: Tensor, S_target: Tensor, p: float = 2.0, log1p_eps: Optional[float] = None) -> Tensor:
    """Distance between coefficients of the same paths, per example and path.

    ``d = || rho(S_target) - rho(S) ||_p`` over the last two axes (F', T').

    Args:
        S, S_target: (..., F', T') coefficients.
        p: order of the norm.
        log1p_eps: if set, compare ``log1p(S / log1p_eps)``.

    Returns:
        Tensor of shape (...).
    """
    diff = compress(S_target, log1p_eps) - compress(S, log1p_eps)
    total = diff.square().sum(dim=(-2, -1)) if p == 2 else diff.abs().pow(p).sum(dim=(-2, -1))
    # At diff = 0 the norm's derivative is taken as 0: the inner where keeps
    # the unused branch finite, so second derivatives are 0, not NaN.
    nonzero = total > 0
    return torch.where(nonzero, torch.where(nonzero, total, 1.0) ** (1.0 / p), 0.0)
