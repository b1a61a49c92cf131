"""Granular texture of chirplet grains (SCRAPL paper, section 4.2)."""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch
from torch import Tensor

from ._common import (
    RangedSynth,
    ParamRange,
    check_positive_float,
    check_positive_int,
    exp_chirp_cycles,
    mix_with_input,
    sin_cycles,
    uniform,
)

log = logging.getLogger(__name__)

#: Chirp rate (oct/s) at |slope| = 1 for the paper's setting: the reference
#: scales a tangent warp by sr / (Q * hop) / 4 with sr = 8192 Hz, Q = 12,
#: hop = 256 and caps the warp at 0.95 of a quarter turn.
PAPER_MAX_CHIRP_RATE = 8192.0 / (12 * 256) / 4 * math.tan(0.95 * math.pi / 2)


class GranularChirpSynth(RangedSynth):
    r"""A texture of chirplet grains with random onsets and centre frequencies.

    Each node renders ``num_grains`` grains of ``grain_samples`` samples. Grain
    ``k`` has a random onset (uniform over the positions where it fits in
    the output), a random centre frequency ``f_k`` (log-uniform in
    ``f0_range_hz``), a Hann window ``h`` and the chirp rate ``gamma`` shared by
    all grains of the node:

    .. math::

        g_k(t) = a_k\, h(t)\, \sin\!\big(2\pi f_k t\, E(\gamma t \ln 2)\big),
        \quad E(x) = (e^x - 1)/x,

    with ``t`` measured from the grain's centre, so its instantaneous frequency
    is ``f_k 2^{gamma t}``. Parameters:

    - ``density`` ``d`` (sigmoid to ``density_range``, default [0, 1]): the
      number of active grains is ``n(d) = num_grains ** d`` (log scale: one
      grain at 0, all at 1), with soft gains
      ``a_k = sigmoid((n(d) - k - 1/2) / grain_softness)`` so that ``d`` has a
      gradient;
    - ``slope`` ``s`` (sigmoid to ``slope_range``, default [-1, 1]): the chirp
      rate ``gamma = max_chirp_rate * tan(w pi s / 2) / tan(w pi / 2)`` with
      ``w = slope_warp``, a tangent warp under which ``s`` is proportional to
      the angle of the grains in a spectrogram, as in the paper's synth.

    The sum of the grains is scaled to RMS ``output_rms`` (loudness does not
    depend on the density). Grain content above Nyquist is muted.

    The random draws (onsets, centre frequencies) come from the processor's
    :class:`~scrapl_graph.processors._common.RandomSource`, or from per-node
    seeds passed to :meth:`forward`. See :class:`ChirpletSynth` for how the
    synth sits in a GRAFX graph (``input_mode``).

    Args:
        sample_rate (float): sample rate in Hz (paper: 8192).
        num_samples (int): output length (paper: 32768).
        num_grains (int): maximum number of grains (paper: 64).
        grain_samples (int): grain length (paper: 4096), at most ``num_samples``.
        f0_range_hz (tuple): centre-frequency range (paper: 256 to 2048 Hz),
            below Nyquist.
        density_range, slope_range (tuple or ParamRange): physical ranges;
            density within [0, 1], slope within [-1, 1].
        max_chirp_rate (float): chirp rate at ``|slope| = 1`` in oct/s
            (default :data:`PAPER_MAX_CHIRP_RATE`, about 8.47).
        slope_warp (float): ``w`` in (0, 1) of the tangent warp (default 0.95).
        grain_softness (float): width, in grains, of the density roll-off.
        output_rms (float or None): output RMS; ``None`` leaves the sum as is.
        input_mode (str): ``"add"`` or ``"ignore"``.
        seed, generator, deterministic: source of randomness.

    Raises:
        ValueError / TypeError: for out-of-range or ill-typed settings.
    """

    def __init__(
        self,
        sample_rate: float = 8192.0,
        num_samples: int = 32768,
        num_grains: int = 64,
        grain_samples: int = 4096,
        f0_range_hz=(256.0, 2048.0),
        density_range=(0.0, 1.0),
        slope_range=(-1.0, 1.0),
        max_chirp_rate: float = PAPER_MAX_CHIRP_RATE,
        slope_warp: float = 0.95,
        grain_softness: float = 0.25,
        output_rms: Optional[float] = 0.1,
        input_mode: str = "add",
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        deterministic: bool = False,
    ):
        super().__init__(sample_rate, num_samples, input_mode, seed, generator, deterministic)
        self.num_grains = check_positive_int(num_grains, "num_grains")
        self.grain_samples = check_positive_int(grain_samples, "grain_samples", minimum=2)
        if self.grain_samples > self.num_samples:
            raise ValueError(f"grain_samples={grain_samples} exceeds num_samples={num_samples}")
        self.f0_range = ParamRange.coerce(f0_range_hz, "f0_range_hz", log=True)
        if self.f0_range.maximum >= self.sample_rate / 2:
            raise ValueError(f"f0_range_hz must lie below Nyquist ({self.sample_rate / 2} Hz), got {f0_range_hz}")
        self.ranges = {"density": ParamRange.coerce(density_range, "density_range"),
                       "slope": ParamRange.coerce(slope_range, "slope_range")}
        if self.density_range.minimum < 0 or self.density_range.maximum > 1:
            raise ValueError(f"density_range must lie within [0, 1], got {density_range}")
        if self.slope_range.minimum < -1 or self.slope_range.maximum > 1:
            raise ValueError(f"slope_range must lie within [-1, 1], got {slope_range}")
        self.max_chirp_rate = check_positive_float(max_chirp_rate, "max_chirp_rate")
        self.slope_warp = check_positive_float(slope_warp, "slope_warp")
        if self.slope_warp >= 1:
            # tan would reach its pole at |slope| = 1.
            raise ValueError(f"slope_warp must be in (0, 1), got {slope_warp}")
        self.grain_softness = check_positive_float(grain_softness, "grain_softness")
        self.output_rms = None if output_rms is None else check_positive_float(output_rms, "output_rms")

    @property
    def density_range(self) -> ParamRange:
        return self.ranges["density"]

    @property
    def slope_range(self) -> ParamRange:
        return self.ranges["slope"]

    def chirp_rate(self, slope: Tensor) -> Tensor:
        """Chirp rate in oct/s for physical slopes in [-1, 1]."""
        half_turn = self.slope_warp * math.pi / 2
        return self.max_chirp_rate * torch.tan(half_turn * slope) / math.tan(half_turn)

    def grain_gains(self, density: Tensor) -> Tensor:
        """Soft gains ``a_k`` of the grains, shape ``(nodes, num_grains)``, for physical densities."""
        k = torch.arange(self.num_grains, device=density.device, dtype=density.dtype)
        active = self.num_grains ** density[:, None]
        return torch.sigmoid((active - k - 0.5) / self.grain_softness)

    def draw_grains(self, num_nodes: int, seed: Optional[Tensor] = None):
        """Random onsets ``(nodes, grains)`` (long) and centre frequencies ``(nodes, grains)`` (Hz)."""
        gens = self.random.node_generators(num_nodes, seed)
        lo, hi = math.log(self.f0_range.minimum), math.log(self.f0_range.maximum)
        last_onset = self.num_samples - self.grain_samples
        onsets, freqs = [], []
        for g in gens:
            onsets.append(torch.randint(0, last_onset + 1, (self.num_grains,), generator=g))
            freqs.append(torch.exp(lo + uniform(g, (self.num_grains,)) * (hi - lo)))
        return torch.stack(onsets), torch.stack(freqs)

    def forward(self, input_signals: Optional[Tensor], density: Tensor, slope: Tensor,
                seed: Optional[Tensor] = None) -> Tensor:
        """Render one texture per node.

        Args:
            input_signals: ``(nodes, channels, num_samples)`` or ``None``.
            density, slope: unconstrained parameters, ``(nodes, 1)``.
            seed: optional integer tensor ``(nodes,)`` of per-node seeds.

        Returns:
            Tensor ``(nodes, channels, num_samples)`` (one channel without input).

        Raises:
            TypeError / ValueError: for ill-typed or mis-shaped inputs.
        """
        input_signals, nodes, phys = self._checked_call(input_signals, {"density": density, "slope": slope})
        dev, dt = phys["density"].device, phys["density"].dtype
        gains = self.grain_gains(phys["density"])  # (nodes, G)
        rate = self.chirp_rate(phys["slope"])[:, None, None]  # (nodes, 1, 1)

        onsets, freqs = self.draw_grains(nodes, seed)
        onsets, freqs = onsets.to(dev), freqs.to(device=dev, dtype=dt)[:, :, None]

        j = torch.arange(self.grain_samples, device=dev, dtype=dt)
        t = (j - self.grain_samples / 2) / self.sample_rate
        hann = torch.sin(math.pi * j / self.grain_samples) ** 2
        # Mute grain content above Nyquist; freeze the phase there (see ChirpletSynth).
        octaves_to_nyquist = torch.log2(self.sample_rate / 2 / freqs)
        rate_t = rate * t
        below_nyquist = (rate_t < octaves_to_nyquist).to(dt)
        t_safe = torch.where(below_nyquist.bool(), t.expand_as(rate_t), torch.zeros_like(rate_t))
        cycles = exp_chirp_cycles(freqs, rate, t_safe)
        grains = gains[:, :, None] * hann * sin_cycles(cycles) * below_nyquist

        # Overlap-add the grains at their onsets (scatter_add is differentiable
        # with respect to the grain values).
        positions = onsets[:, :, None] + torch.arange(self.grain_samples, device=dev)
        x = torch.zeros(nodes, self.num_samples, device=dev, dtype=dt)
        x = x.scatter_add(1, positions.reshape(nodes, -1), grains.reshape(nodes, -1))
        if self.output_rms is not None:
            x = x * (self.output_rms / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-12))
        return mix_with_input(x, input_signals, self.input_mode)
