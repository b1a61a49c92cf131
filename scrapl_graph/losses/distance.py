"""The per-path distance shared by the SCRAPL and full-JTFS losses, and what it compares.

By default each estimate is compared with its own target (``compare="example"``):
``mean_b || rho(S x_target_b) - rho(S x_b) ||``. With ``compare="batch_mean"`` the
coefficients are first averaged over the batch, and the loss is the one distance
``|| rho(mean_b S x_target_b) - rho(mean_b S x_b) ||``: a comparison of statistics
of the batch, not of its examples. That is what excerpts of a recording need when
some nuisance varies from one excerpt to the next and is unknown, such as the phase
of an effect's LFO relative to the music: per example, the distance at the true
parameters is not zero and depends on that phase; between batch means (of
time-invariant coefficients, ``T="global"``) the phase is averaged out on both sides.
"""
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


COMPARISONS = ("example", "batch_mean")


def check_compare(compare: str) -> str:
    if compare not in COMPARISONS:
        raise ValueError(f"compare must be one of {COMPARISONS}, got {compare!r}")
    return compare


def compared(S: Tensor, compare: str, groups: int = 1) -> Tensor:
    """What the distance sees of coefficients S ``(groups * batch, ...)``: S itself (``"example"``),
    or the mean over each group's batch, ``(groups, ...)`` (``"batch_mean"``)."""
    if compare == "example":
        return S
    return S.reshape((groups, -1) + tuple(S.shape[1:])).mean(dim=1)

