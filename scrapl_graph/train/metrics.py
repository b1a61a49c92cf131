"""The paper's parameter error ("theta_synth L1").

Parameter error. The synths of :mod:`scrapl_graph.processors` map each
unconstrained theta entry ``z`` to its physical range through
``sigmoid(z)`` (on a linear or log scale), so ``sigmoid(z)`` in [0, 1] is the
parameter's normalized position in its range. The parameter error reported
here is the paper's "theta_synth L1": the mean absolute difference of these
normalized positions, ``mean |sigmoid(theta) - sigmoid(theta_true)|`` (0 is
exact, 1 the width of the range; the paper quotes it in per mille). For
GRAFX processors that do not squash their parameters with a sigmoid (EQ
log-magnitudes, for instance) it is still a bounded, monotone comparison.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor


def normalized_param_error(theta: Tensor, true_theta: Tensor, columns: Optional[Sequence[int]] = None,
                           reduce: bool = True) -> Tensor:
    r"""The paper's parameter error: L1 distance of normalized parameter positions.

    ``err = mean_{b, u} |sigmoid(theta[b, u]) - sigmoid(true_theta[b, u])|``

    over the examples b and the selected columns u of theta.

    Args:
        theta: estimated unconstrained parameters, ``(B, n_theta)``.
        true_theta: the true ones, same shape.
        columns: column indices to compare (default: all).
        reduce: return the mean (a scalar); if False, the mean over examples
            for each selected column, shape ``(n_columns,)``.

    Returns:
        A tensor (no gradient): the error, in [0, 1].

    Raises:
        TypeError: if an argument is not a floating-point tensor.
        ValueError: if the shapes differ or are not 2-D.
    """
    for name, t in (("theta", theta), ("true_theta", true_theta)):
        if not torch.is_tensor(t) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(t).__name__}")
        if t.ndim != 2:
            raise ValueError(f"{name} must have shape (B, n_theta), got {tuple(t.shape)}")
    if theta.shape[0] == 0:
        raise ValueError("theta has no rows: the parameter error needs at least one example")
    if theta.shape != true_theta.shape:
        raise ValueError(f"theta {tuple(theta.shape)} and true_theta {tuple(true_theta.shape)} differ in shape")
    with torch.no_grad():
        diff = (torch.sigmoid(theta.detach()) - torch.sigmoid(true_theta.detach().to(theta.device))).abs()
        if columns is not None:
            diff = diff[:, list(columns)]
        return diff.mean() if reduce else diff.mean(dim=0)
