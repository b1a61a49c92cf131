r"""The supervised parameter loss ("P-loss") baseline of the paper.

A P-loss compares the predicted synth parameters with the true ones instead
of comparing sounds. The synths here map each unconstrained theta entry z
to its range through ``sigmoid(z)``, the entry's normalized position in
[0, 1] (see :mod:`scrapl_graph.train.metrics`); the loss compares these
positions:

``P(theta_hat, theta) = sum_u (1/B) sum_b d(sigmoid(theta_hat[b, u]), sigmoid(theta[b, u]))``

with ``d(a, b) = (a - b)^2`` by default: the paper's P-loss runs
(``train/texture/train_ploss.yml``) use ``torch.nn.MSELoss`` on each
normalized parameter and add the parameters' losses.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..checks import check_finite, check_real_float


class ParameterLoss(nn.Module):
    r"""Distance between predicted and true synth parameters (P-loss).

    ``P = reduce_u mean_b d(f(theta_hat[b, u]), f(theta[b, u]))``

    with ``f = sigmoid`` (or the identity when ``normalize=False``), ``d``
    the squared (``"mse"``) or absolute (``"l1"``) difference, and
    ``reduce_u`` the sum (the paper's) or mean over parameters. Called as
    ``loss(theta_hat, theta_true)`` on (batch, n_theta) tensors; the class
    attribute ``compares = "theta"`` tells training code to pass parameters
    rather than audio.

    Args:
        distance: ``"mse"`` (squared difference) or ``"l1"``.
        normalize: compare ``sigmoid(theta)`` (normalized positions in the
            parameters' ranges); False compares theta itself.
        reduction: ``"sum"`` or ``"mean"`` over the parameters.
        check_values: the NaN/Inf check of inputs (None: on CPU only; see
            :mod:`scrapl_graph.checks`).

    Raises:
        ValueError: an unknown ``distance`` or ``reduction``.
    """

    compares = "theta"

    def __init__(self, distance: str = "mse", normalize: bool = True, reduction: str = "sum",
                 check_values: Optional[bool] = None):
        super().__init__()
        if distance not in ("mse", "l1"):
            raise ValueError(f"distance must be 'mse' or 'l1', got {distance!r}")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.distance, self.normalize, self.reduction = distance, bool(normalize), reduction
        self.check_values = check_values

    def forward(self, theta_hat: Tensor, theta_true: Tensor) -> Tensor:
        """The loss between predicted and true unconstrained parameters, both (batch, n_theta).

        Returns:
            A scalar tensor in the inputs' dtype.

        Raises:
            TypeError: for non-tensors or non-real-floating dtypes.
            ValueError: for shapes that are not 2-D, empty or unequal, mismatched
                dtypes or devices, or NaN/Inf values (see the value-check rule).
        """
        for name, t in (("theta_hat", theta_hat), ("theta_true", theta_true)):
            check_real_float(t, name)
            if t.ndim != 2 or 0 in t.shape:
                raise ValueError(f"{name} must have a non-empty shape (batch, n_theta), got {tuple(t.shape)}")
        if theta_hat.shape != theta_true.shape:
            raise ValueError(f"theta_hat {tuple(theta_hat.shape)} and theta_true {tuple(theta_true.shape)} differ")
        if theta_hat.dtype != theta_true.dtype or theta_hat.device != theta_true.device:
            raise ValueError(f"theta_hat and theta_true must share dtype and device, got "
                             f"{theta_hat.dtype}/{theta_hat.device} and {theta_true.dtype}/{theta_true.device}")
        check_finite(theta_hat, "theta_hat", self.check_values, what="parameters")
        check_finite(theta_true, "theta_true", self.check_values, what="parameters")
        if self.normalize:
            theta_hat, theta_true = torch.sigmoid(theta_hat), torch.sigmoid(theta_true)
        diff = theta_hat - theta_true
        per_param = (diff.square() if self.distance == "mse" else diff.abs()).mean(dim=0)
        return per_param.sum() if self.reduction == "sum" else per_param.mean()
