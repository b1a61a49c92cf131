r"""An LFO-driven phaser: a cascade of modulated first-order all-pass stages with feedback.

Each stage is the first-order all-pass filter

.. math::

    H_a(z) = \frac{a + z^{-1}}{1 + a z^{-1}}, \qquad
    a = \frac{\tan(\pi f_b / f_s) - 1}{\tan(\pi f_b / f_s) + 1} \in (-1, 1),

whose phase passes -90 degrees at the break frequency ``f_b``. The LFO moves the
break frequency of all ``K`` stages, ``f_b[n] = f_c 2^{S m[n]}`` (centre
``f_c``, sweep ``S`` octaves, LFO modulation ``m`` in ``[-d, d]``), and the
cascade's output is fed back, one sample late, with gain ``g``:

.. math::

    u_1[n] = x[n] + g\, y_K[n-1], \quad
    y_i[n] = a u_i[n] + v_i[n-1], \quad v_i[n] = u_i[n] - a y_i[n], \quad u_{i+1} = y_i,

(transposed direct form II, one state ``v_i`` per stage), and the output is
``y = (1 - mix) x + mix y_K``: where the cascade's phase reaches odd
multiples of 180 degrees, dry and wet cancel into moving notches.

With the state ``s = (v_1, ..., v_K, y_K[n-1])`` this is a linear system
``s[n+1] = A(a) s[n] + b(a) x[n]``: the loop is linear in the signal, and only
the coefficient depends on the LFO. The coefficient is updated once per block
of ``block_size`` samples, from the LFO at the block's centre, and the
recursion is solved by :func:`~scrapl_graph.processors.scan.blockwise_linear_scan`.

Block-rate error: a sine LFO moves by at most ``2 pi f_LFO d`` per second, so
within a block of ``B`` samples the control value differs from its
per-sample value by at most ``pi f_LFO d B / f_s`` (mid-block sampling),
i.e. the break frequency by a factor ``2^{S pi f_LFO d B / f_s}``: for
``f_LFO = 2 Hz``, ``d = 1``, ``S = 2``, ``B = 32``, ``f_s = 22050``, within 1.3 %
(0.22 semitone). The measured output difference against per-sample
updates is in the tests (``test_phaser_block_rate_error``).
"""
from __future__ import annotations

import math
import torch
from torch import Tensor

from ._common import ParamRange, check_positive_int
from .lfo import LFO
from .scan import blockwise_linear_scan
from .stateful import StatefulEffect


def allpass_coefficient(break_hz: Tensor, sample_rate: float) -> Tensor:
    """``a = (tan(pi f_b / f_s) - 1) / (tan(pi f_b / f_s) + 1)`` of a first-order all-pass."""
    t = torch.tan(math.pi * break_hz.clamp(max=0.49 * sample_rate) / sample_rate)
    return (t - 1.0) / (t + 1.0)


def _cascade_step(a: Tensor, g: Tensor, s: Tensor, x: Tensor, stages: int) -> Tensor:
    """One sample of the feedback cascade: the next state ``s[n+1]`` from ``s[n]`` and ``x[n]``.

    ``a`` and ``g`` broadcast against ``s[..., 0]``; ``s`` is ``(..., K + 1)``.
    """
    u = x + g * s[..., stages]
    new = []
    for i in range(stages):
        y = a * u + s[..., i]
        new.append(u - a * y)
        u = y
    new.append(u)
    return torch.stack(new, dim=-1)


class Phaser(StatefulEffect):
    r"""A phaser of ``stages`` modulated first-order all-pass stages with feedback (see the module docstring).

    Parameters (``parameter_size()``, each ``(1,)``, unconstrained reals):
    ``lfo_rate`` (Hz), ``lfo_depth``, ``lfo_phase`` (cycles), ``center`` (Hz,
    log scale), ``feedback`` and ``mix``.

    States (streaming): the LFO phase, and per node and channel the stage
    states and the last cascade output.

    Args:
        sample_rate (float): in Hz.
        stages (int): number of all-pass stages ``K``.
        sweep_octaves (float): break-frequency sweep ``S`` at full depth.
        block_size (int): samples per coefficient update (1: every sample).
        lfo_shape (str): ``"sine"``, ``"triangle"`` or ``"saw"``.
        lfo_rate, lfo_depth, center, feedback, mix: ``(min, max)`` ranges.

    Raises:
        ValueError: for non-positive sizes or invalid ranges.
    """

    def __init__(self, sample_rate: float = 22050.0, stages: int = 4, sweep_octaves: float = 2.0,
                 block_size: int = 32, lfo_shape: str = "sine", lfo_rate=(0.05, 5.0), lfo_depth=(0.0, 1.0),
                 center=(200.0, 2000.0), feedback=(0.0, 0.8), mix=(0.5, 0.5)):
        super().__init__(sample_rate)
        self.stages = check_positive_int(stages, "stages")
        self.sweep_octaves = float(sweep_octaves)
        self.block_size = check_positive_int(block_size, "block_size")
        self.lfo = LFO(lfo_shape, lfo_rate, lfo_depth)
        self.ranges = {**self.lfo.ranges(), "center": ParamRange.coerce(center, "center", log=True),
                       "feedback": ParamRange.coerce(feedback, "feedback"), "mix": ParamRange.coerce(mix, "mix")}
        if not -1 < self.ranges["feedback"].minimum <= self.ranges["feedback"].maximum < 1:
            raise ValueError("feedback must lie in (-1, 1) for a stable loop")

    def state_matrices(self, a: Tensor, g: Tensor):
        """The linear system of one block: ``A(a)`` ``(..., K+1, K+1)`` and ``b(a)`` ``(..., K+1)``.

        Built by applying one step of the cascade to the unit states (columns
        of ``A``) and to a unit input with a zero state (``b``), so the
        matrices cannot drift from :func:`_cascade_step`.
        """
        D = self.stages + 1
        eye = torch.eye(D, dtype=a.dtype, device=a.device)
        columns = _cascade_step(a[..., None], g[..., None], eye, torch.zeros((), dtype=a.dtype), self.stages)
        b = _cascade_step(a, g, a.new_zeros(a.shape + (D,)), torch.ones((), dtype=a.dtype), self.stages)
        return columns.transpose(-1, -2), b

    def forward(self, input_signals: Tensor, **params: Tensor) -> Tensor:
        """Phase the input.

        Args:
            input_signals: ``(nodes, channels, samples)``.
            **params: the parameters of :meth:`parameter_size`, ``(nodes, 1)`` each.

        Returns:
            Tensor of the input's shape.
        """
        x, p = self._check(input_signals, params)
        nodes, channels, length = x.shape
        state = self._read_state(nodes)
        start = p["lfo_phase"] if state is None else state["lfo"]
        m, end = self.lfo.run(start, p["lfo_rate"], p["lfo_depth"], length, self.sample_rate, self.block_size)
        a = allpass_coefficient(p["center"] * torch.pow(2.0, self.sweep_octaves * m), self.sample_rate)
        A, b = self.state_matrices(a[:, 0], p["feedback"][:, 0].expand_as(a[:, 0]))  # (nodes, blocks, ...)
        D, blocks = self.stages + 1, a.shape[-1]
        A = A[:, None].expand(nodes, channels, blocks, D, D).reshape(nodes * channels, blocks, D, D)
        b = b[:, None].expand(nodes, channels, blocks, D).reshape(nodes * channels, blocks, D)
        b = b.repeat_interleave(self.block_size, dim=1)[:, :length]
        flat = x.reshape(nodes * channels, length)
        s0 = flat.new_zeros(nodes * channels, D) if state is None else state["filter"]
        states, final = blockwise_linear_scan(A, b * flat[..., None], s0, self.block_size)
        # The cascade output at sample n is the last state component after the step.
        wet = torch.cat([states[:, 1:, self.stages], final[:, None, self.stages]], dim=1)
        self._write_state(nodes, {"lfo": end, "filter": final})
        mix = p["mix"]
        return (1.0 - mix) * x + mix * wet.reshape(nodes, channels, length)

    def extra_repr(self) -> str:
        return f"stages={self.stages}, block_size={self.block_size}, lfo={self.lfo.shape!r}"

