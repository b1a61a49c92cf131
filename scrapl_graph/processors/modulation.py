r"""LFO-driven effects without feedback: tremolo, and flanger/chorus (a modulated fractional delay).

Both evaluate their LFO (:mod:`.lfo`) at every sample, so chunked rendering
needs no block alignment, and neither has a recursion: a chunk depends on
the past only through the LFO phase and, for the delay, the last few
milliseconds of input (the cached padding).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import ParamRange
from .lfo import LFO
from .stateful import StatefulEffect


class Tremolo(StatefulEffect):
    r"""Amplitude modulation by an LFO: ``y[n] = x[n] (1 - d (1 - w(phi[n])) / 2)``.

    With depth ``d`` and waveform ``w`` in ``[-1, 1]`` the gain swings between
    ``1 - d`` (LFO trough) and 1 (LFO crest).

    Parameters (each ``(1,)``): ``lfo_rate`` (Hz), ``lfo_depth``, ``lfo_phase`` (cycles).
    State (streaming): the LFO phase.

    Args:
        sample_rate (float): in Hz.
        lfo_shape (str): ``"sine"``, ``"triangle"`` or ``"saw"``.
        lfo_rate, lfo_depth: ``(min, max)`` ranges.
    """

    def __init__(self, sample_rate: float = 22050.0, lfo_shape: str = "sine", lfo_rate=(0.5, 12.0),
                 lfo_depth=(0.0, 1.0)):
        super().__init__(sample_rate)
        self.lfo = LFO(lfo_shape, lfo_rate, lfo_depth)
        self.ranges = self.lfo.ranges()

    def forward(self, input_signals: Tensor, **params: Tensor) -> Tensor:
        """Apply the tremolo to ``input_signals`` ``(nodes, channels, samples)``; same shape out."""
        x, p = self._check(input_signals, params)
        state = self._read_state(x.shape[0])
        start = p["lfo_phase"] if state is None else state["lfo"]
        m, end = self.lfo.run(start, p["lfo_rate"], p["lfo_depth"], x.shape[-1], self.sample_rate)
        self._write_state(x.shape[0], {"lfo": end})
        # m = d w, so 1 - d/2 + m/2 = 1 - d (1 - w) / 2.
        return x * (1.0 - 0.5 * p["lfo_depth"] + 0.5 * m)


DELAY_MODES = {
    # base delay range (ms) and full-depth sweep (ms)
    "flanger": ((0.5, 3.0), 3.0),
    "chorus": ((8.0, 25.0), 10.0),
}


class ModulatedDelay(StatefulEffect):
    r"""Flanger or chorus: the input mixed with a copy read from an LFO-modulated fractional delay.

    .. math::

        \tau[n] = \tau_0 + \frac{\Delta}{2} (1 + m[n]) \;\text{(samples)}, \qquad
        y[n] = (1 - \mathrm{mix})\, x[n] + \mathrm{mix}\; x(n - \tau[n]),

    where ``x(t)`` between samples is the linear interpolation
    ``(1 - f) x[i] + f x[i + 1]`` (``i = floor(t)``, ``f = t - i``), so the
    output is differentiable in the delay. ``tau_0`` is the base delay, ``Delta``
    the sweep at full depth and ``m`` the LFO modulation in ``[-d, d]``. A
    flanger uses delays of a few milliseconds (comb notches sweeping the
    spectrum), a chorus 10 to 35 ms (a detuned double). There is no feedback
    path, so the effect stays exactly chunkable without a recursion.

    Parameters (each ``(1,)``): ``lfo_rate``, ``lfo_depth``, ``lfo_phase``,
    ``delay_ms`` (base delay) and ``mix``.
    States (streaming): the LFO phase and the last ``max_delay + 2`` input
    samples per node and channel (the cached padding the next chunk reads).

    Args:
        sample_rate (float): in Hz.
        mode (str): ``"flanger"`` or ``"chorus"``: default delay range and sweep.
        delay_ms: ``(min, max)`` base delay in ms (default from ``mode``).
        sweep_ms (float): sweep ``Delta`` in ms at full depth (default from ``mode``).
        lfo_shape, lfo_rate, lfo_depth, mix: as for the other effects.

    Raises:
        ValueError: for an unknown mode or a negative delay.
    """

    def __init__(self, sample_rate: float = 22050.0, mode: str = "flanger", delay_ms=None, sweep_ms=None,
                 lfo_shape: str = "sine", lfo_rate=(0.05, 5.0), lfo_depth=(0.0, 1.0), mix=(0.5, 0.5)):
        super().__init__(sample_rate)
        if mode not in DELAY_MODES:
            raise ValueError(f"mode must be one of {sorted(DELAY_MODES)}, got {mode!r}")
        default_delay, default_sweep = DELAY_MODES[mode]
        self.mode = mode
        self.sweep_ms = float(default_sweep if sweep_ms is None else sweep_ms)
        delay = ParamRange.coerce(default_delay if delay_ms is None else delay_ms, "delay_ms")
        if delay.minimum < 0 or self.sweep_ms < 0:
            raise ValueError("delays must be non-negative")
        self.lfo = LFO(lfo_shape, lfo_rate, lfo_depth)
        self.ranges = {**self.lfo.ranges(), "delay_ms": delay, "mix": ParamRange.coerce(mix, "mix")}
        # Samples of history a read can reach back to: the longest delay, plus
        # one for the interpolation's right neighbour, plus one for rounding.
        self.history = int(math.ceil((delay.maximum + self.sweep_ms) * 1e-3 * self.sample_rate)) + 2

    def forward(self, input_signals: Tensor, **params: Tensor) -> Tensor:
        """Apply the effect to ``input_signals`` ``(nodes, channels, samples)``; same shape out."""
        x, p = self._check(input_signals, params)
        nodes, channels, length = x.shape
        state = self._read_state(nodes)
        start = p["lfo_phase"] if state is None else state["lfo"]
        # The delay is computed in float64: a sweep of hundreds of samples
        # would turn float32 rounding of the LFO into 1e-4-sample jitter.
        m, end = self.lfo.run(start, p["lfo_rate"], p["lfo_depth"], length, self.sample_rate, dtype=torch.float64)
        ms_to_samples = 1e-3 * self.sample_rate
        tau = (p["delay_ms"] + 0.5 * self.sweep_ms * (1.0 + m)) * ms_to_samples  # (nodes, 1, length)

        H = self.history
        past = x.new_zeros(nodes, channels, H) if state is None else state["past"]
        padded = torch.cat([past, x], dim=-1)
        # Split the delay into whole samples and a fraction so that positions
        # stay exact integers: in float32, H + n - tau for n in the tens of
        # thousands would round the fraction to a few thousandths.
        whole = torch.floor(tau).detach()
        frac = (1.0 - (tau - whole)).to(x.dtype)  # weight of the later sample, in (0, 1]
        n = torch.arange(length, device=x.device)
        i0 = (H - 1 + n - whole.long()).clamp(0, H + length - 2).expand(nodes, channels, length)
        delayed = (1.0 - frac) * padded.gather(-1, i0) + frac * padded.gather(-1, i0 + 1)
        self._write_state(nodes, {"lfo": end, "past": padded[..., -H:]})
        return (1.0 - p["mix"]) * x + p["mix"] * delayed

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, sweep_ms={self.sweep_ms}, history={self.history}"
