"""Sound-matching metrics as the paper reports them.

- theta L1 in permille of each parameter's range: the synths map an
  unconstrained ``theta_u`` to its range through ``sigmoid``, so
  ``1000 |sigmoid(theta_hat_u) - sigmoid(theta_u)|`` is the error in
  thousandths of the range (the paper's "theta_synth L1", per parameter and mean);
- audio distances on the rendered estimate: the full-tree JTFS distance and
  the multi-resolution STFT distance.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ..losses import JTFSLoss, build_loss

AUDIO_METRICS = ("jtfs", "mss")


def theta_l1_permille(theta_hat: Tensor, theta: Tensor) -> Tensor:
    """``(n_theta,)``: the batch-mean ``1000 |sigmoid(theta_hat) - sigmoid(theta)|`` of each parameter."""
    with torch.no_grad():
        return 1000.0 * (torch.sigmoid(theta_hat) - torch.sigmoid(theta.to(theta_hat))).abs().mean(dim=0)


class AudioMetrics(nn.Module):
    """Audio distances between estimates and targets, built once per signal length.

    Args:
        names: a subset of ``("jtfs", "mss")``.
        num_samples: the signal length.
        jtfs: the JTFS configuration of the ``"jtfs"`` distance (``J``, ``Q1``, ...).

    Raises:
        ValueError: for an unknown name.
    """

    def __init__(self, names: Sequence[str], num_samples: int, jtfs: Optional[Mapping] = None):
        super().__init__()
        unknown = sorted(set(names) - set(AUDIO_METRICS))
        if unknown:
            raise ValueError(f"unknown audio metrics {unknown}; choose from {AUDIO_METRICS}")
        self.distances = nn.ModuleDict()
        if "jtfs" in names:
            self.distances["jtfs"] = JTFSLoss(num_samples, **dict(jtfs or default_jtfs(num_samples)))
        if "mss" in names:
            self.distances["mss"] = build_loss("mss")

    @torch.no_grad()
    def forward(self, x_hat: Tensor, x: Tensor) -> Dict[str, Tensor]:
        return {name: distance(x_hat, x) for name, distance in self.distances.items()}


def default_jtfs(num_samples: int) -> Dict[str, int]:
    """The paper's JTFS (J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2), with 2**J at most half the signal length."""
    return dict(J=min(12, num_samples.bit_length() - 2), Q1=8, Q2=2, J_fr=3, Q_fr=2)
