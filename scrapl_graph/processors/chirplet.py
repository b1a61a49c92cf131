"""Amplitude-modulated exponential chirplet synth (SCRAPL paper, section 4.3)."""
from __future__ import annotations

import logging
import math
from typing import Dict, Optional

import torch
from torch import Tensor

from ._common import (
    MIN_LOG_WINDOW,
    RangedSynth,
    ParamRange,
    check_positive_float,
    check_positive_int,
    exp_chirp_cycles,
    mix_with_input,
    sin_cycles,
)

log = logging.getLogger(__name__)

#: The four AM / FM range configurations of the paper's table 3:
#: name -> (theta_AM range in Hz, theta_FM range in octaves per second).
CHIRPLET_PRESETS: Dict[str, Dict[str, tuple]] = {
    "slow_am_slow_fm": {"am_range": (1.0, 2.0), "fm_range": (0.5, 1.0)},
    "slow_am_moderate_fm": {"am_range": (1.0, 2.0), "fm_range": (2.0, 4.0)},
    "fast_am_moderate_fm": {"am_range": (2.8, 8.4), "fm_range": (2.0, 4.0)},
    "fast_am_fast_fm": {"am_range": (2.8, 8.4), "fm_range": (4.0, 12.0)},
}


class ChirpletSynth(RangedSynth):
    r"""Gaussian-windowed exponential chirp with amplitude modulation.

    With ``t`` in seconds measured from the middle sample of the output and
    ``tau = t - delta / sr`` (``delta`` the random integer time shift), the
    output is

    .. math::

        x(\tau) = w(\tau)\, m(\tau)\, \sin\big(2\pi \varphi(\tau)\big)

    - carrier: exponential chirp with instantaneous frequency
      ``f(tau) = f0 * 2 ** (theta_FM * tau)`` (octaves per second), i.e.
      ``phi(tau) = f0 (2^{theta_FM tau} - 1) / (theta_FM ln 2)``;
    - window: Gaussian ``w(tau) = exp(-tau^2 / (2 sigma^2))`` with
      ``sigma = bandwidth_oct / (window_sigmas * theta_FM)`` seconds, so the
      chirp sweeps ``bandwidth_oct`` octaves across ``window_sigmas`` standard
      deviations of its window (``+-5 sigma`` by default, as in the reference
      implementation of the paper);
    - modulator: raised cosine ``m(tau) = (1 + cos(2 pi theta_AM tau)) / 2``,
      full-depth amplitude modulation whose envelope repeats ``theta_AM``
      times per second and peaks at the window's centre.

    Frequencies above Nyquist are muted rather than aliased. The peak
    amplitude is 1.

    Parameters (GRAFX protocol, unconstrained reals of shape ``(nodes, 1)``):

    - ``theta_am``: AM rate, mapped by a sigmoid to ``am_range`` (Hz) on a log scale;
    - ``theta_fm``: chirp rate, mapped by a sigmoid to ``fm_range`` (oct/s) on a log scale.

    The log scale matches the paper's log-uniform sampling of both rates.

    In a GRAFX graph this synth is a one-inlet node fed by an ``"in"`` node
    (GRAFX 0.6 cannot render nodes without inlets): with ``input_mode="add"``
    the input is added to the synth output (feed zeros for the bare synth),
    with ``"ignore"`` it is discarded. The mono synth is copied to every input
    channel.

    Args:
        sample_rate (float): sample rate in Hz (paper: 8192).
        num_samples (int): output length (paper: 32768).
        f0_hz (float): carrier frequency at the window centre (paper: 512 Hz).
        bandwidth_oct (float): octaves swept across the window (paper: 2).
        am_range (tuple or ParamRange): ``theta_AM`` range in Hz; default the
            union of the paper's configurations, (1.0, 8.4).
        fm_range (tuple or ParamRange): ``theta_FM`` range in oct/s, must be
            positive; default the union of the paper's configurations, (0.5, 12.0).
        max_shift (int): the chirplet centre is shifted by a random integer
            number of samples drawn uniformly from ``[-max_shift, max_shift]``
            (paper: 2048); 0 disables the shift.
        window_sigmas (float): number of window standard deviations that span
            ``bandwidth_oct`` octaves (default 10).
        input_mode (str): ``"add"`` or ``"ignore"`` (see above).
        seed (int, optional), generator (torch.Generator, optional),
        deterministic (bool): source of the random shifts, see
            :class:`~scrapl_graph.processors._common.RandomSource`.

    Raises:
        ValueError / TypeError: for out-of-range or ill-typed settings, e.g. a
            carrier at or above Nyquist, a non-positive FM range, or
            ``max_shift`` not smaller than ``num_samples``.
    """

    def __init__(
        self,
        sample_rate: float = 8192.0,
        num_samples: int = 32768,
        f0_hz: float = 512.0,
        bandwidth_oct: float = 2.0,
        am_range=(1.0, 8.4),
        fm_range=(0.5, 12.0),
        max_shift: int = 2048,
        window_sigmas: float = 10.0,
        input_mode: str = "add",
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        deterministic: bool = False,
    ):
        super().__init__(sample_rate, num_samples, input_mode, seed, generator, deterministic)
        self.f0_hz = check_positive_float(f0_hz, "f0_hz")
        if self.f0_hz >= self.sample_rate / 2:
            raise ValueError(f"f0_hz={self.f0_hz} must be below Nyquist ({self.sample_rate / 2} Hz)")
        self.bandwidth_oct = check_positive_float(bandwidth_oct, "bandwidth_oct")
        self.window_sigmas = check_positive_float(window_sigmas, "window_sigmas")
        self.ranges = {"theta_am": ParamRange.coerce(am_range, "am_range", log=True),
                       "theta_fm": ParamRange.coerce(fm_range, "fm_range", log=True)}
        if self.am_range.minimum < 0:
            raise ValueError(f"am_range must be non-negative, got {self.am_range}")
        if self.fm_range.minimum <= 0:
            raise ValueError(f"fm_range must be positive (upward chirps), got {self.fm_range}")
        self.max_shift = check_positive_int(max_shift, "max_shift", minimum=0)
        if self.max_shift >= self.num_samples:
            raise ValueError(f"max_shift={self.max_shift} must be smaller than num_samples={self.num_samples}")

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> "ChirpletSynth":
        """Build the synth with one of the paper's table-3 AM/FM range configurations.

        Args:
            name: a key of :data:`CHIRPLET_PRESETS` (``"slow_am_slow_fm"``,
                ``"slow_am_moderate_fm"``, ``"fast_am_moderate_fm"``,
                ``"fast_am_fast_fm"``).
            **kwargs: other constructor arguments.

        Raises:
            ValueError: for an unknown preset name.
        """
        if name not in CHIRPLET_PRESETS:
            raise ValueError(f"unknown chirplet preset {name!r}; choose from {sorted(CHIRPLET_PRESETS)}")
        return cls(**{**CHIRPLET_PRESETS[name], **kwargs})

    @property
    def am_range(self) -> ParamRange:
        return self.ranges["theta_am"]

    @property
    def fm_range(self) -> ParamRange:
        return self.ranges["theta_fm"]

    def draw_shifts(self, num_nodes: int, seed: Optional[Tensor] = None) -> Tensor:
        """Random shifts in samples, integers in ``[-max_shift, max_shift]``, shape ``(nodes,)``."""
        gens = self.random.node_generators(num_nodes, seed)
        if self.max_shift == 0:
            return torch.zeros(num_nodes, dtype=torch.long)
        return torch.stack([
            torch.randint(-self.max_shift, self.max_shift + 1, (), generator=g) for g in gens
        ])

    def forward(self, input_signals: Optional[Tensor], theta_am: Tensor, theta_fm: Tensor,
                seed: Optional[Tensor] = None) -> Tensor:
        """Render one chirplet per node.

        Args:
            input_signals: ``(nodes, channels, num_samples)`` or ``None``.
            theta_am, theta_fm: unconstrained parameters, ``(nodes, 1)``.
            seed: optional integer tensor ``(nodes,)`` of per-node seeds for
                the time shift (overrides the processor's generator).

        Returns:
            Tensor ``(nodes, channels, num_samples)`` (one channel without input).

        Raises:
            TypeError / ValueError: for ill-typed or mis-shaped inputs.
        """
        input_signals, nodes, phys = self._checked_call(input_signals, {"theta_am": theta_am, "theta_fm": theta_fm})
        am, fm = phys["theta_am"][:, None], phys["theta_fm"][:, None]
        ref = am

        shifts = self.draw_shifts(nodes, seed).to(device=ref.device, dtype=ref.dtype)
        n = torch.arange(self.num_samples, device=ref.device, dtype=ref.dtype)
        tau = (n[None, :] - self.num_samples // 2 - shifts[:, None]) / self.sample_rate

        # The sweep reaches Nyquist at tau_nyq; beyond it the output is muted
        # rather than aliased, and the phase is frozen there so that 2**(fm tau)
        # cannot overflow into inf * 0 = nan.
        tau_nyq = math.log2(self.sample_rate / 2 / self.f0_hz) / fm
        below_nyquist = (tau < tau_nyq).to(ref.dtype)
        f0 = torch.as_tensor(self.f0_hz, device=ref.device, dtype=ref.dtype)
        carrier = sin_cycles(exp_chirp_cycles(f0, fm, torch.minimum(tau, tau_nyq)))
        sigma = self.bandwidth_oct / (self.window_sigmas * fm)
        window = torch.exp((-0.5 * (tau / sigma) ** 2).clamp(min=MIN_LOG_WINDOW))
        modulator = 0.5 * (1.0 + torch.cos(2 * math.pi * am * tau))
        x = window * modulator * carrier * below_nyquist
        return mix_with_input(x, input_signals, self.input_mode)
