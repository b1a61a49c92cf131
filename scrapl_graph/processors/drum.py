"""TR-808-style one-shot drum voice (SCRAPL paper, section 4.4)."""
from __future__ import annotations

import logging
import math
from typing import Dict, Mapping, Optional

import torch
from torch import Tensor

from ._common import (
    RangedSynth,
    ParamRange,
    check_input_signals,
    check_positive_float,
    check_positive_int,
    check_scalar_params,
    mix_with_input,
    sin_cycles,
)

log = logging.getLogger(__name__)

# -60 dB in natural-log units: an envelope exp(-T60_LOG * t / T60) falls by
# 60 dB after T60 seconds.
T60_LOG = 3.0 * math.log(10.0)
# RMS of the noise sources before their envelopes: peaks then stay near 1.
NOISE_RMS = 1.0 / 3.0

#: Default physical ranges of the 14 parameters (units in the names' docs of
#: :class:`DrumSynth`); log scale for times, frequencies, Q and drive.
DRUM_PARAMETER_RANGES: Dict[str, ParamRange] = {
    "tone_freq": ParamRange(20.0, 2000.0, log=True),
    "tone_decay": ParamRange(0.01, 2.0, log=True),
    "pitch_env_amount": ParamRange(0.0, 4.0),
    "pitch_env_decay": ParamRange(0.001, 0.5, log=True),
    "tone_level": ParamRange(0.0, 1.0),
    "tone_drive": ParamRange(0.1, 10.0, log=True),
    "tone2_ratio": ParamRange(1.0, 4.0),
    "tone2_level": ParamRange(0.0, 1.0),
    "noise_level": ParamRange(0.0, 1.0),
    "noise_decay": ParamRange(0.005, 2.0, log=True),
    "noise_filter_freq": ParamRange(100.0, 16000.0, log=True),
    "noise_filter_q": ParamRange(0.3, 10.0, log=True),
    "noise_filter_mode": ParamRange(0.0, 1.0),
    "click_level": ParamRange(0.0, 1.0),
}

#: Physical settings that render kick, snare, tom and hi-hat-like sounds.
DRUM_PRESETS: Dict[str, Dict[str, float]] = {
    "kick": dict(
        tone_freq=50.0, tone_decay=0.8, pitch_env_amount=1.5, pitch_env_decay=0.02,
        tone_level=0.9, tone_drive=2.0, tone2_ratio=1.5, tone2_level=0.01,
        noise_level=0.02, noise_decay=0.05, noise_filter_freq=3000.0, noise_filter_q=0.7,
        noise_filter_mode=0.05, click_level=0.3,
    ),
    "snare": dict(
        tone_freq=180.0, tone_decay=0.25, pitch_env_amount=0.5, pitch_env_decay=0.01,
        tone_level=0.6, tone_drive=1.0, tone2_ratio=1.85, tone2_level=0.5,
        noise_level=0.8, noise_decay=0.3, noise_filter_freq=5000.0, noise_filter_q=0.8,
        noise_filter_mode=0.85, click_level=0.2,
    ),
    "tom": dict(
        tone_freq=120.0, tone_decay=0.6, pitch_env_amount=0.6, pitch_env_decay=0.05,
        tone_level=0.8, tone_drive=1.2, tone2_ratio=1.5, tone2_level=0.05,
        noise_level=0.1, noise_decay=0.1, noise_filter_freq=1000.0, noise_filter_q=1.0,
        noise_filter_mode=0.5, click_level=0.1,
    ),
    "hihat": dict(
        tone_freq=800.0, tone_decay=0.1, pitch_env_amount=0.02, pitch_env_decay=0.005,
        tone_level=0.15, tone_drive=3.0, tone2_ratio=1.47, tone2_level=0.15,
        noise_level=0.9, noise_decay=0.12, noise_filter_freq=9000.0, noise_filter_q=1.5,
        noise_filter_mode=0.95, click_level=0.05,
    ),
}


class DrumSynth(RangedSynth):
    r"""A TR-808-style one-shot voice: pitched oscillators plus filtered noise.

    With ``t >= 0`` in seconds from the first sample, the output is

    .. math::

        y = L_o \frac{\tanh(g\, o)}{\tanh g} + L_n\, e_n\, (h * v) + L_c\, e_c\, v_c

    - oscillators ``o(t) = sin(2 pi phi(t)) + L_2 sin(2 pi r phi(t))`` times the
      amplitude envelope ``e_o = exp(-ln(1000) t / T_o)`` (``T_o`` the -60 dB
      decay time), where the pitch glides down from ``A`` octaves above
      ``f``: ``phi' (t) = f 2^{A exp(-t / tau_p)}`` (integrated by a
      cumulative sum);
    - ``tanh`` drive ``g`` adds harmonics (normalised so a full-scale sine
      keeps its peak);
    - noise ``v`` (white, Gaussian) through a multimode state-variable filter
      ``H = (1-m)^2 H_LP + 2m(1-m) H_BP + m^2 H_HP`` (analog prototypes with
      cut-off ``f_c`` and quality ``Q`` sampled on the FFT grid; ``m = 0``
      low-pass, ``1/2`` band-pass, ``1`` high-pass), shaped by
      ``e_n = exp(-ln(1000) t / T_n)``; the filtered noise is scaled to RMS
      1/3 whatever the filter, so ``L_n`` alone sets its loudness;
    - a click: a second white noise ``v_c`` (RMS 1/3) under a fixed 1 ms exponential
      envelope ``e_c``, for the stick attack.

    Oscillator content above Nyquist is muted. The 14 parameters, all
    unconstrained reals of shape ``(nodes, 1)`` mapped by a sigmoid to
    ``ranges`` (defaults :data:`DRUM_PARAMETER_RANGES`):
    ``tone_freq`` (``f``, Hz), ``tone_decay`` (``T_o``, s), ``pitch_env_amount``
    (``A``, octaves), ``pitch_env_decay`` (``tau_p``, s), ``tone_level``
    (``L_o``), ``tone_drive`` (``g``), ``tone2_ratio`` (``r``), ``tone2_level``
    (``L_2``), ``noise_level`` (``L_n``), ``noise_decay`` (``T_n``, s),
    ``noise_filter_freq`` (``f_c``, Hz), ``noise_filter_q`` (``Q``),
    ``noise_filter_mode`` (``m``), ``click_level`` (``L_c``).

    Presets :data:`DRUM_PRESETS` (``"kick"``, ``"snare"``, ``"tom"``,
    ``"hihat"``) are available through :meth:`preset_parameters` at every
    sample rate (a cut-off above the sample-rate dependent filter range is
    clamped into it). For misaligned (paper: "meso") sound matching, follow
    the synth with a :class:`~scrapl_graph.processors.TimeShift` node. See
    :class:`ChirpletSynth` for how the synth sits in a GRAFX graph.

    Args:
        sample_rate (float): sample rate in Hz (paper: 44100).
        num_samples (int): output length (paper: 44100).
        ranges (Mapping[str, ParamRange or (min, max)], optional): overrides of
            the default ranges, by parameter name (a pair keeps the default's
            scale). Without an override, the ``noise_filter_freq`` range is
            narrowed to ``[min(100, 0.1 nyquist), min(16000, 0.9 nyquist)]``.
        click_decay (float): time constant of the click envelope in seconds.
        input_mode (str): ``"add"`` or ``"ignore"``.
        seed, generator, deterministic: source of the noise.

    Raises:
        ValueError / TypeError: for unknown range names, a filter range
            reaching Nyquist, or ill-typed settings.
    """

    PARAMETER_NAMES = tuple(DRUM_PARAMETER_RANGES)

    def __init__(
        self,
        sample_rate: float = 44100.0,
        num_samples: int = 44100,
        ranges: Optional[Mapping[str, object]] = None,
        click_decay: float = 0.001,
        input_mode: str = "add",
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        deterministic: bool = False,
    ):
        super().__init__(sample_rate, num_samples, input_mode, seed, generator, deterministic)
        self.click_decay = check_positive_float(click_decay, "click_decay")
        self.ranges = dict(DRUM_PARAMETER_RANGES)
        for name, value in (ranges or {}).items():
            if name not in self.ranges:
                raise ValueError(f"unknown drum parameter {name!r}; choose from {list(self.ranges)}")
            self.ranges[name] = ParamRange.coerce(value, f"ranges[{name!r}]", log=self.ranges[name].log)
        # Ranges the caller chose: presets outside them are refused rather
        # than clamped (see preset_parameters).
        self._caller_ranges = frozenset(ranges or ())
        nyquist = self.sample_rate / 2
        if not (ranges and "noise_filter_freq" in ranges):
            # The default filter range is meant for 44.1 kHz: keep it below
            # Nyquist at lower sample rates.
            default = self.ranges["noise_filter_freq"]
            self.ranges["noise_filter_freq"] = ParamRange(
                min(default.minimum, 0.1 * nyquist), min(default.maximum, 0.9 * nyquist), log=True)
        if self.ranges["noise_filter_freq"].maximum >= nyquist:
            raise ValueError(f"noise_filter_freq range must lie below Nyquist ({nyquist} Hz), "
                             f"got {self.ranges['noise_filter_freq']}")
        for name, rng in self.ranges.items():
            if name.endswith(("_decay", "_freq", "_q", "_ratio", "_drive")) and rng.minimum <= 0:
                raise ValueError(f"range of {name} must be positive, got {rng}")

    def preset_parameters(self, name: str, num_nodes: int = 1) -> Dict[str, Tensor]:
        """Unconstrained parameters that render a preset, repeated over ``num_nodes``.

        The presets are physical settings for 44.1 kHz. Below about 36 kHz the
        default ``noise_filter_freq`` range shrinks to ``0.9`` Nyquist (see the
        constructor), so a preset cut-off above it (the snare's 5 kHz at
        11.025 kHz, the hi-hat's 9 kHz at 16 kHz) is clamped into the range,
        and the presets render at every sample rate the synth accepts.
        Each clamp is reported by a ``logging`` message at INFO level (logger
        ``scrapl_graph.processors.drum``). A value outside a range given
        through the constructor's ``ranges`` is an error instead.

        Args:
            name: ``"kick"``, ``"snare"``, ``"tom"`` or ``"hihat"``.
            num_nodes: rows of each returned ``(num_nodes, 1)`` tensor.

        Raises:
            ValueError: for an unknown preset, or a preset value outside a
                range given through ``ranges``.
        """
        if name not in DRUM_PRESETS:
            raise ValueError(f"unknown drum preset {name!r}; choose from {sorted(DRUM_PRESETS)}")
        check_positive_int(num_nodes, "num_nodes")
        values = {}
        for param, value in DRUM_PRESETS[name].items():
            rng = self.ranges[param]
            if rng.minimum <= value <= rng.maximum:
                values[param] = value
            elif param in self._caller_ranges:
                raise ValueError(f"drum preset {name!r} sets {param}={value}, outside the range "
                                 f"[{rng.minimum}, {rng.maximum}] given in ranges")
            else:
                values[param] = min(max(value, rng.minimum), rng.maximum)
                log.info("drum preset %r: %s=%g clamped to %g, the limit of its range [%g, %g] "
                         "at sample rate %g Hz", name, param, value, values[param],
                         rng.minimum, rng.maximum, self.sample_rate)
        params = self.unconstrained(**values)
        return {k: v.expand(num_nodes, 1).clone() for k, v in params.items()}

    def _noise_filter(self, fc: Tensor, q: Tensor, mode: Tensor, n_fft: int) -> Tensor:
        """Complex response ``(nodes, n_fft // 2 + 1)`` of the multimode filter on the rfft grid."""
        freqs = torch.fft.rfftfreq(n_fft, d=1.0 / self.sample_rate).to(device=fc.device, dtype=fc.dtype)
        s = 1j * (freqs[None, :] / fc[:, None])  # s / omega_c
        denom = s * s + s / q[:, None] + 1.0
        lowpass = 1.0 / denom
        bandpass = (s / q[:, None]) / denom
        highpass = (s * s) / denom
        m = mode[:, None]
        return (1 - m) ** 2 * lowpass + 2 * m * (1 - m) * bandpass + m ** 2 * highpass

    def forward(self, input_signals: Optional[Tensor], seed: Optional[Tensor] = None, **params: Tensor) -> Tensor:
        """Render one drum hit per node.

        Args:
            input_signals: ``(nodes, channels, num_samples)`` or ``None``.
            seed: optional integer tensor ``(nodes,)`` of per-node noise seeds.
            **params: the 14 unconstrained parameters, each ``(nodes, 1)``.

        Returns:
            Tensor ``(nodes, channels, num_samples)`` (one channel without input).

        Raises:
            TypeError: for missing or unknown parameters, or ill-typed inputs.
            ValueError: for mis-shaped inputs.
        """
        missing = [n for n in self.PARAMETER_NAMES if n not in params]
        unknown = sorted(set(params) - set(self.PARAMETER_NAMES))
        if missing or unknown:
            raise TypeError(f"DrumSynth.forward: missing parameters {missing}, unknown parameters {unknown}")
        input_signals = check_input_signals(input_signals, self.num_samples)
        nodes = None if input_signals is None else input_signals.shape[0]
        params, nodes = check_scalar_params(params, nodes)
        p = {k: v[:, None] for k, v in self.physical(**params).items()}  # (nodes, 1) each
        ref = params["tone_freq"]
        dev, dt = ref.device, ref.dtype
        t = torch.arange(self.num_samples, device=dev, dtype=dt)[None, :] / self.sample_rate

        # Oscillators with a downward pitch glide, integrated sample by sample.
        inst_freq = p["tone_freq"] * torch.exp2(p["pitch_env_amount"] * torch.exp(-t / p["pitch_env_decay"]))
        cycles = torch.cumsum(inst_freq, dim=-1) / self.sample_rate
        cycles = cycles - cycles[:, :1]  # start at zero phase: no step at the onset
        nyquist = self.sample_rate / 2
        osc = sin_cycles(cycles) * (inst_freq < nyquist).to(dt)
        osc2 = sin_cycles(p["tone2_ratio"] * cycles) * (p["tone2_ratio"] * inst_freq < nyquist).to(dt)
        tone = (osc + p["tone2_level"] * osc2) * torch.exp(-T60_LOG * t / p["tone_decay"])
        drive = p["tone_drive"]
        tone = p["tone_level"] * torch.tanh(drive * tone) / torch.tanh(drive)

        # Filtered noise; filtering is circular in the FFT, which is harmless
        # because the noise is stationary and the envelope is applied after.
        gens = self.random.node_generators(nodes, seed)
        raw = torch.stack([torch.randn(2, self.num_samples, generator=g, dtype=torch.float64) for g in gens])
        raw = raw.to(device=dev, dtype=dt)
        response = self._noise_filter(p["noise_filter_freq"][:, 0], p["noise_filter_q"][:, 0],
                                      p["noise_filter_mode"][:, 0], self.num_samples)
        # Dividing by the filter's RMS gain makes the noise RMS NOISE_RMS for
        # every filter setting: the level sets loudness, the filter timbre.
        rms_gain = torch.sqrt(response.abs().pow(2).mean(dim=-1, keepdim=True))
        noise = torch.fft.irfft(torch.fft.rfft(raw[:, 0]) * (response / rms_gain), n=self.num_samples)
        noise = p["noise_level"] * NOISE_RMS * noise * torch.exp(-T60_LOG * t / p["noise_decay"])
        click = p["click_level"] * NOISE_RMS * raw[:, 1] * torch.exp(-t / self.click_decay)

        return mix_with_input(tone + noise + click, input_signals, self.input_mode)
