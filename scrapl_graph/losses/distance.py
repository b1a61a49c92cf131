"""The per-path distance shared by the SCRAPL and full-JTFS losses, and input checks."""
from __future__ import annotations

from typing import Optional, Tuple

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


def check_pair(x: Tensor, x_target: Tensor) -> Tuple[int, int]:
    """Validate an auraloss-style (batch, channels, samples) pair; return (batch * channels, samples).

    Raises:
        TypeError: for non-tensors or non-real-floating dtypes.
        ValueError: for a wrong ndim, mismatched shapes, or NaN/Inf values.
    """
    for name, t in (("x", x), ("x_target", x_target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex() or not t.is_floating_point():
            raise TypeError(f"{name} must be a real floating-point tensor, got dtype {t.dtype}")
        if t.ndim != 3:
            raise ValueError(f"{name} must have shape (batch, channels, samples), got {tuple(t.shape)}")
    if x.shape != x_target.shape:
        raise ValueError(f"x and x_target must have the same shape, got {tuple(x.shape)} and {tuple(x_target.shape)}")
    if x.dtype != x_target.dtype or x.device != x_target.device:
        raise ValueError(f"x and x_target must share dtype and device, got {x.dtype}/{x.device} and {x_target.dtype}/{x_target.device}")
    return x.shape[0] * x.shape[1], x.shape[2]
