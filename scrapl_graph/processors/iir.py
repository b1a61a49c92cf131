r"""Stateful IIR filters: a one-pole low-pass and an RBJ biquad, solved by a block scan.

Both are linear time-invariant state-space systems ``s[n+1] = A s[n] + b x[n]``,
``y[n] = c s[n] + d x[n]``, whose recursion runs through
:func:`~scrapl_graph.processors.scan.blockwise_linear_scan` (no Python loop
over samples). Their coefficients are static per node, so chunks need no
alignment; the state carried between chunks is the filter memory.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import ParamRange
from .scan import blockwise_linear_scan
from .stateful import StatefulEffect

#: Samples per block of the scan (a speed setting only: the coefficients are static).
SCAN_BLOCK = 64
BIQUAD_TYPES = ("lowpass", "highpass", "bandpass")


def _scan_static(A: Tensor, b: Tensor, x: Tensor, s0: Tensor):
    """Run ``s[n+1] = A s[n] + b x[n]`` for static ``A`` ``(batch, D, D)``, ``b`` ``(batch, D)``, ``x`` ``(batch, N)``."""
    blocks = -(-x.shape[-1] // SCAN_BLOCK)
    A = A[:, None].expand(-1, blocks, -1, -1)
    return blockwise_linear_scan(A, b[:, None, :] * x[..., None], s0, SCAN_BLOCK)


class OnePoleLowpass(StatefulEffect):
    r"""One-pole low-pass ``y[n] = a y[n-1] + (1 - a) x[n]``, ``a = exp(-2 pi f_c / f_s)``.

    Unit gain at DC; -3 dB near ``f_c`` for ``f_c`` well below Nyquist.

    Parameters: ``cutoff`` (Hz, log scale). State (streaming): ``y[n-1]`` per node and channel.

    Args:
        sample_rate (float): in Hz.
        cutoff: ``(min, max)`` range in Hz.
    """

    def __init__(self, sample_rate: float = 22050.0, cutoff=(20.0, 10000.0)):
        super().__init__(sample_rate)
        self.ranges = {"cutoff": ParamRange.coerce(cutoff, "cutoff", log=True)}

    def forward(self, input_signals: Tensor, cutoff: Tensor) -> Tensor:
        """Filter ``input_signals`` ``(nodes, channels, samples)``; same shape out."""
        x, p = self._check(input_signals, {"cutoff": cutoff})
        nodes, channels, length = x.shape
        a = torch.exp(-2 * math.pi * p["cutoff"] / self.sample_rate).expand(nodes, channels, 1).reshape(-1, 1, 1)
        flat = x.reshape(nodes * channels, length)
        state = self._read_state(nodes)
        s0 = flat.new_zeros(nodes * channels, 1) if state is None else state["y"]
        # State s[n] = y[n-1]: s[n+1] = a s[n] + (1 - a) x[n] = y[n].
        states, final = _scan_static(a, (1.0 - a)[..., 0], flat, s0)
        self._write_state(nodes, {"y": final})
        y = torch.cat([states[:, 1:, 0], final], dim=1)
        return y.reshape(nodes, channels, length)


def rbj_coefficients(kind: str, cutoff: Tensor, q: Tensor, sample_rate: float):
    """Normalised RBJ cookbook biquad coefficients ``(b0, b1, b2, a1, a2)`` (``a0 = 1``).

    Raises:
        ValueError: for an unknown filter type.
    """
    w0 = 2 * math.pi * cutoff.clamp(max=0.49 * sample_rate) / sample_rate
    cos, alpha = torch.cos(w0), torch.sin(w0) / (2 * q)
    if kind == "lowpass":
        b0 = b2 = (1 - cos) / 2
        b1 = 1 - cos
    elif kind == "highpass":
        b0 = b2 = (1 + cos) / 2
        b1 = -(1 + cos)
    elif kind == "bandpass":  # constant 0 dB peak gain
        b0, b1, b2 = alpha, torch.zeros_like(alpha), -alpha
    else:
        raise ValueError(f"biquad type must be one of {BIQUAD_TYPES}, got {kind!r}")
    a0 = 1 + alpha
    return b0 / a0, b1 / a0, b2 / a0, -2 * cos / a0, (1 - alpha) / a0


class Biquad(StatefulEffect):
    r"""An RBJ biquad in transposed direct form II.

    .. math::

        y[n] = b_0 x[n] + s_1[n], \quad
        s_1[n+1] = b_1 x[n] - a_1 y[n] + s_2[n], \quad
        s_2[n+1] = b_2 x[n] - a_2 y[n],

    i.e. ``s[n+1] = [[-a1, 1], [-a2, 0]] s[n] + (b1 - a1 b0, b2 - a2 b0) x[n]``.

    Parameters: ``cutoff`` (Hz, log) and ``q`` (log). State (streaming): ``(s1, s2)``
    per node and channel.

    Args:
        sample_rate (float): in Hz.
        kind (str): ``"lowpass"``, ``"highpass"`` or ``"bandpass"``.
        cutoff, q: ``(min, max)`` ranges.
    """

    def __init__(self, sample_rate: float = 22050.0, kind: str = "lowpass", cutoff=(20.0, 10000.0),
                 q=(0.5, 8.0)):
        super().__init__(sample_rate)
        if kind not in BIQUAD_TYPES:
            raise ValueError(f"biquad type must be one of {BIQUAD_TYPES}, got {kind!r}")
        self.kind = kind
        self.ranges = {"cutoff": ParamRange.coerce(cutoff, "cutoff", log=True), "q": ParamRange.coerce(q, "q", log=True)}

    def forward(self, input_signals: Tensor, cutoff: Tensor, q: Tensor) -> Tensor:
        """Filter ``input_signals`` ``(nodes, channels, samples)``; same shape out."""
        x, p = self._check(input_signals, {"cutoff": cutoff, "q": q})
        nodes, channels, length = x.shape
        b0, b1, b2, a1, a2 = (c.expand(nodes, channels, 1).reshape(-1) for c in
                              rbj_coefficients(self.kind, p["cutoff"], p["q"], self.sample_rate))
        A = torch.stack([torch.stack([-a1, torch.ones_like(a1)], -1), torch.stack([-a2, torch.zeros_like(a2)], -1)], -2)
        b = torch.stack([b1 - a1 * b0, b2 - a2 * b0], -1)
        flat = x.reshape(nodes * channels, length)
        state = self._read_state(nodes)
        s0 = flat.new_zeros(nodes * channels, 2) if state is None else state["s"]
        states, final = _scan_static(A, b, flat, s0)
        self._write_state(nodes, {"s": final})
        y = b0[:, None] * flat + states[..., 0]
        return y.reshape(nodes, channels, length)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
