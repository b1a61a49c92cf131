"""Predictor output layers sized from a theta layout."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .layout import ThetaLayout
from .synth import GraphSynth

__all__ = ["make_predictor_head"]


def make_predictor_head(layout: Union[ThetaLayout, GraphSynth, int], in_features: int, bias: bool = True,
                        init_std: Optional[float] = None) -> nn.Linear:
    """A linear output layer that predicts theta from ``in_features`` features.

    Args:
        layout: a :class:`ThetaLayout`, a :class:`GraphSynth` or ``n_theta``.
        in_features: size of the predictor's embedding.
        bias: give the layer a bias.
        init_std: if given, weights ~ N(0, init_std^2) and a zero bias, so that
            initial predictions sit near the middle of every parameter range
            (sigmoid(0)); otherwise PyTorch's default initialisation.

    Returns:
        ``nn.Linear(in_features, n_theta)``.

    Raises:
        TypeError / ValueError: for a bad layout or sizes.
    """
    if isinstance(layout, GraphSynth):
        layout = layout.layout
    if isinstance(layout, ThetaLayout):
        n_theta = layout.n_theta
    elif isinstance(layout, int) and not isinstance(layout, bool):
        n_theta = layout
    else:
        raise TypeError(f"layout must be a ThetaLayout, a GraphSynth or an int, got {type(layout).__name__}")
    if n_theta < 1:
        raise ValueError(f"n_theta must be >= 1, got {n_theta}")
    if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
        raise ValueError(f"in_features must be a positive int, got {in_features!r}")
    head = nn.Linear(in_features, n_theta, bias=bias)
    if init_std is not None:
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std}")
        with torch.no_grad():
            head.weight.normal_(0.0, init_std)
            if bias:
                head.bias.zero_()
    return head
