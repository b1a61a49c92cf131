r"""A scattering front end for parameter predictors: JTFS features, then a small MLP.

For audio x (mixed to mono), the features are the log-compressed first-order
JTFS paths (the time-averaged scalogram S1 filtered across log-frequency,
spin-0 channel first) and a chosen set of second-order paths,

    f(x) = log1p(S x / eps),   S x in {S1 x (n_fr), S x (n2, n_fr) : chosen paths},

each of shape (F', T') (T' frames of the time average), flattened; a
layer norm, one hidden layer and a linear head map them to the synth's
unconstrained theta. The encoder and a SCRAPL loss then speak the same
language: a path index here is the loss's path index. With ``learnable``
the JTFS filters are trained with the head (see :mod:`scrapl_graph.jtfs.parametric`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..jtfs import JTFS
from .cnn import as_n_theta

__all__ = ["ScatteringEncoder"]


class ScatteringEncoder(nn.Module):
    """Audio ``(B, C, n_samples)`` to ``(B, n_theta)`` through JTFS features and an MLP.

    Args:
        n_samples: signal length.
        n_theta: output size (an int, a GraphSynth, a ThetaLayout).
        J, Q1, Q2, J_fr, Q_fr, T, F: the JTFS configuration (see :class:`~scrapl_graph.JTFS`).
        paths: second-order paths used: "all", "none", or a list of path indices.
        learnable: JTFS wavelet families trained with the head (True: all; () keeps them fixed).
        hidden: width of the hidden layer.
        eps: scale of the log compression ``log1p(S / eps)``.

    Raises:
        ValueError: on a path index out of range or an unknown ``paths`` value.
    """

    def __init__(self, n_samples: int, n_theta: object, J: int = 8, Q1: int = 8, Q2: int = 2, J_fr: int = 3,
                 Q_fr: int = 2, T: Optional[Union[int, str]] = None, F: Optional[Union[int, str]] = None,
                 paths: Union[str, Sequence[int]] = "all", learnable: Union[bool, Sequence[str]] = (), hidden: int = 128,
                 eps: float = 1e-3):
        super().__init__()
        self.n_theta = as_n_theta(n_theta)
        self.jtfs = JTFS(n_samples, J, Q1, Q2, J_fr, Q_fr, T=T, F=F, learnable=learnable)
        if paths == "all":
            self.path_idxs = list(range(self.jtfs.n_paths))
        elif paths == "none":
            self.path_idxs = []
        elif isinstance(paths, str):
            raise ValueError(f'paths must be "all", "none" or a list of path indices, got {paths!r}')
        else:
            self.path_idxs = [self.jtfs.check_idx(int(i)) for i in paths]
        self.eps = float(eps)
        n_freq, n_time = self.jtfs.out_shape
        n_features = (self.jtfs.n_first_order + len(self.path_idxs)) * n_freq * n_time
        self.head = nn.Sequential(nn.LayerNorm(n_features), nn.Linear(n_features, hidden), nn.ReLU(),
                                  nn.Linear(hidden, self.n_theta))

    def features(self, x: Tensor) -> Tensor:
        """The log-compressed JTFS features of ``x`` (B, C, N): (B, n_channels, F', T')."""
        if x.ndim != 3:
            raise ValueError(f"x must be (batch, channels, samples), got shape {tuple(x.shape)}")
        spectra, _ = self.jtfs.scalogram_spectra(x.mean(dim=1))
        parts = [self.jtfs.first_order_from_spectra(spectra, range(self.jtfs.n_first_order))]
        if self.path_idxs:
            parts.append(self.jtfs.paths_from_spectra(spectra, self.path_idxs))
        return torch.log1p(torch.cat(parts, dim=1) / self.eps)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(B, C, n_samples)`` audio. Returns: ``(B, n_theta)`` unconstrained theta."""
        return self.head(self.features(x).flatten(1))
