r"""A feed-forward compressor driven by a stateful energy envelope follower.

.. math::

    e[n] = \alpha e[n-1] + (1 - \alpha) \bar{x^2}[n], \qquad \alpha = e^{-1 / (\tau f_s)},

    G[n] = \min\!\left(0, (1/R - 1)(10 \log_{10}(e[n] + \epsilon) - T)\right) \text{ dB}, \qquad
    y[n] = x[n]\, 10^{G[n] / 20},

with time constant ``tau``, threshold ``T`` (dB), ratio ``R`` and ``x^2``
averaged over channels (stereo-linked). The follower is a one-pole
recursion (linear in ``x^2``), solved by
:func:`~scrapl_graph.processors.scan.blockwise_linear_scan`; the gain curve
is memoryless. Attack and release share one time constant: separate ones
would make the recursion switch on the signal, which a linear scan cannot
express.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._common import ParamRange
from .iir import _scan_static
from .stateful import StatefulEffect

EPS = 1e-8


class EnvelopeCompressor(StatefulEffect):
    """A compressor whose level detector is a one-pole energy follower (see the module docstring).

    Parameters: ``time_ms`` (log), ``threshold_db``, ``ratio`` (log).
    State (streaming): the envelope ``e[n-1]`` per node.

    Args:
        sample_rate (float): in Hz.
        time_ms, threshold_db, ratio: ``(min, max)`` ranges.
    """

    def __init__(self, sample_rate: float = 22050.0, time_ms=(1.0, 300.0), threshold_db=(-60.0, 0.0),
                 ratio=(1.0, 20.0)):
        super().__init__(sample_rate)
        self.ranges = {"time_ms": ParamRange.coerce(time_ms, "time_ms", log=True),
                       "threshold_db": ParamRange.coerce(threshold_db, "threshold_db"),
                       "ratio": ParamRange.coerce(ratio, "ratio", log=True)}

    def envelope(self, energy: Tensor, time_ms: Tensor, e0: Tensor):
        """The follower over ``energy`` ``(nodes, samples)`` from ``e0`` ``(nodes, 1)``: ``(e, e_last)``."""
        alpha = torch.exp(-1.0 / (time_ms.reshape(-1, 1, 1) * 1e-3 * self.sample_rate))
        states, final = _scan_static(alpha, (1.0 - alpha)[..., 0], energy, e0)
        return torch.cat([states[:, 1:, 0], final], dim=1), final

    def forward(self, input_signals: Tensor, time_ms: Tensor, threshold_db: Tensor, ratio: Tensor) -> Tensor:
        """Compress ``input_signals`` ``(nodes, channels, samples)``; same shape out."""
        x, p = self._check(input_signals, {"time_ms": time_ms, "threshold_db": threshold_db, "ratio": ratio})
        state = self._read_state(x.shape[0])
        e0 = x.new_zeros(x.shape[0], 1) if state is None else state["e"]
        env, last = self.envelope(x.square().mean(1), p["time_ms"], e0)
        self._write_state(x.shape[0], {"e": last})
        level_db = 10.0 * torch.log10(env[:, None, :] + EPS)
        gain_db = torch.clamp((1.0 / p["ratio"] - 1.0) * (level_db - p["threshold_db"]), max=0.0)
        return x * torch.pow(10.0, gain_db / 20.0)

