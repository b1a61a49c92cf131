r"""The low-frequency oscillator (LFO) shared by the modulation effects.

An LFO is not a graph node: each effect that uses one carries its three
parameters (``lfo_rate``, ``lfo_depth``, ``lfo_phase``) among its own and its
phase among its states. With rate ``f`` (Hz), depth ``d`` in ``[0, 1]`` and
phase offset ``phi_0`` (cycles, in ``[0, 1)``) at sample rate ``f_s``:

.. math::

    \phi[n] = (\phi_{start} + f n / f_s) \bmod 1, \qquad
    m[n] = d \, w(\phi[n]) \in [-d, d]

with ``phi_start = phi_0`` in the first call and the phase the previous call
ended in afterwards (streaming). The waveform ``w`` is one of

- ``"sine"``: ``w(phi) = sin(2 pi phi)``;
- ``"triangle"``: ``w(phi) = 1 - 4 |((phi + 1/4) mod 1) - 1/2|`` (0 at ``phi = 0``, rising);
- ``"saw"``: ``w(phi) = 2 phi - 1`` (rising ramp, jumps at ``phi = 1``).

The phase is accumulated in float64 and wrapped before it is cast back: in
float32, ``f n / f_s`` past a few thousand cycles (minutes of audio) would
lose about 1e-4 cycles of resolution, and a chunked render, whose phase
restarts near 0 every chunk, would no longer match a one-call render.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ._common import ParamRange

LFO_SHAPES = ("sine", "triangle", "saw")


def lfo_waveform(phase: Tensor, shape: str) -> Tensor:
    """The unit-amplitude waveform ``w(phase)`` of ``shape`` (see the module docstring).

    Raises:
        ValueError: for an unknown shape.
    """
    if shape == "sine":
        return torch.sin(2 * math.pi * phase)
    if shape == "triangle":
        return 1.0 - 4.0 * torch.abs(torch.remainder(phase + 0.25, 1.0) - 0.5)
    if shape == "saw":
        return 2.0 * phase - 1.0
    raise ValueError(f"LFO shape must be one of {LFO_SHAPES}, got {shape!r}")


class LFO:
    """An LFO's parameter ranges and its phase arithmetic, for an effect to embed.

    Args:
        shape (str): ``"sine"``, ``"triangle"`` or ``"saw"``.
        rate (pair or ParamRange): LFO rate range in Hz (log scale).
        depth (pair or ParamRange): depth range, within ``[0, 1]``.

    Raises:
        ValueError: for an unknown shape or a depth range outside ``[0, 1]``.
    """

    def __init__(self, shape: str = "sine", rate=(0.05, 10.0), depth=(0.0, 1.0)):
        if shape not in LFO_SHAPES:
            raise ValueError(f"LFO shape must be one of {LFO_SHAPES}, got {shape!r}")
        self.shape = shape
        self.rate = ParamRange.coerce(rate, "rate", log=True)
        self.depth = ParamRange.coerce(depth, "depth")
        if self.depth.minimum < 0 or self.depth.maximum > 1:
            raise ValueError(f"depth range must lie in [0, 1], got [{self.depth.minimum}, {self.depth.maximum}]")

    def ranges(self) -> Dict[str, ParamRange]:
        """The LFO's parameters as an effect lists them: rate (Hz), depth, phase offset (cycles)."""
        return {"lfo_rate": self.rate, "lfo_depth": self.depth, "lfo_phase": ParamRange(0.0, 1.0)}

    @staticmethod
    def phases(start: Tensor, rate: Tensor, positions: Tensor, sample_rate: float) -> Tensor:
        """Wrapped phases ``(start + rate * n / f_s) mod 1`` at sample positions ``n``.

        Args:
            start: phase at sample 0 of the call, ``(nodes, 1, 1)`` cycles.
            rate: ``(nodes, 1, 1)`` Hz.
            positions: sample positions ``(n,)`` relative to the call's start (may be fractional).
            sample_rate: in Hz.

        Returns:
            Tensor ``(nodes, 1, n)`` in ``[0, 1)``, float64.
        """
        cycles = start.double() + rate.double() * (positions.double() / sample_rate)
        return torch.remainder(cycles, 1.0)

    @staticmethod
    def end_phase(start: Tensor, rate: Tensor, num_samples: int, sample_rate: float) -> Tensor:
        """The phase the next call starts from after ``num_samples`` samples, wrapped to ``[0, 1)``.

        Kept in float64: a float32 phase state would round by up to 6e-8
        cycles per chunk, which a delay sweep of hundreds of samples turns
        into measurable differences from a one-call render.
        """
        return torch.remainder(start.double() + rate.double() * (num_samples / sample_rate), 1.0)

    def modulation(self, phase: Tensor, depth: Tensor) -> Tensor:
        """``m = depth * w(phase)``, in ``[-depth, depth]``."""
        return depth * lfo_waveform(phase, self.shape)

    def run(self, start: Tensor, rate: Tensor, depth: Tensor, num_samples: int, sample_rate: float,
            hop: int = 1, dtype: Optional[torch.dtype] = None) -> Tuple[Tensor, Tensor]:
        """The modulation over a call and the phase the call ends in.

        With ``hop == 1`` the LFO is evaluated at every sample; with ``hop > 1``
        once per block of ``hop`` samples, at the block's centre
        ``n = k hop + (hop - 1) / 2`` (the mid-point halves the largest
        deviation from the per-sample value compared with the block start).

        Args:
            start, rate, depth: ``(nodes, 1, 1)``.
            num_samples: length of the call.
            sample_rate: in Hz.
            hop: samples per control-rate value.
            dtype: dtype of ``m`` (default ``depth``'s).

        Returns:
            ``(m, end)``: ``m`` of shape ``(nodes, 1, ceil(num_samples / hop))``
            and the end phase ``(nodes, 1, 1)`` (float64).
        """
        blocks = -(-num_samples // hop)
        positions = torch.arange(blocks, device=rate.device, dtype=torch.float64) * hop + (hop - 1) / 2
        phase = self.phases(start, rate, positions, sample_rate)
        m = self.modulation(phase, depth.double()).to(depth.dtype if dtype is None else dtype)
        return m, self.end_phase(start, rate, num_samples, sample_rate)
