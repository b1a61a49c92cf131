r"""A constant-Q front end written in torch: Gabor filters at geometric centre frequencies.

The SCRAPL paper's encoders read a log-compressed constant-Q transform (CQT)
of the audio. This module computes one from first principles.

Filters. Bin ``k = 0 .. K-1`` (``K = n_octaves * B``, ``B`` bins per octave)
is centred at

.. math:: f_k = f_\min \, 2^{k/B}

and has a Gaussian frequency response (an analytic Morlet/Gabor filter: zero
at negative frequencies, zero phase at its centre)

.. math:: \hat\psi_k(f) = g_k \exp\!\Big(-\frac{(f - f_k)^2}{2\sigma_k^2}\Big), \quad f \ge 0,
          \qquad \sigma_k = \frac{f_k}{Q\sqrt{2\ln 2}}, \qquad Q = \frac{s}{2^{1/B} - 1},

with ``s = filter_scale``. Every filter has the same quality factor: its full
width at half maximum is ``2 f_k / Q``, the main-lobe width at half amplitude
of a Hann window of length ``l_k = Q sr / f_k``, the window of the usual
(librosa-style) CQT with the same ``Q``; neighbouring bins cross at half
amplitude. The gain ``g_k`` is ``sqrt(l_k)`` (``gain="sqrt_length"``, the
scale of the usual CQT with L1-normalized kernels and librosa normalization,
which the reference experiments feed to ``log1p(U / 1e-3)``) or 1
(``gain="unit"``). A cosine of amplitude ``A`` at ``f_k`` thus gives
``A g_k / 2`` in bin ``k``, constant over time.

Transform. The signal is padded (reflect by default) by at least five
standard deviations of the longest filter's envelope, multiplied by each
filter in the frequency domain, and read at every ``hop_length``-th sample,
frames centred on samples ``0, h, 2h, ...``: ``n_frames = N // h + 1``. The
subsampling is done in the frequency domain: for an FFT length ``L = M h``,

.. math:: y[m h] = \frac{1}{h}\,\mathrm{IDFT}_M\Big(\sum_{r=0}^{h-1} Y[j + r M]\Big)[m],

and each octave's filters are stored and applied on their frequency band
only, so memory grows with the filters' bandwidth, not with
``n_bins * L``. The output is ``log1p(|y| / log_eps)`` (``log_eps=None``
returns the magnitude).

Why this and not nnAudio. The reference experiments use nnAudio's CQT. It
is written here instead because: it adds no dependency (a third-party
package whose releases, license terms and torch compatibility would then
constrain ours; nnAudio also prints while building its kernels unless told
not to); the filters have a closed form, so tests check exact analytic
values (peak bin, amplitude, octave spacing, time invariance) rather than
agreement with another implementation; and it is plain torch (FFTs and
elementwise products), so it runs wherever torch runs, in float32 and
float64, on CPU and GPU, and is differentiable.
It is not bit-identical to nnAudio: Gaussian instead of Hann windows, exact
rather than ceiled window lengths in the gain, and a frequency-domain instead
of a strided time-domain convolution.
"""
from __future__ import annotations

import math
import numbers
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_audio, check_finite

__all__ = ["ConstantQTransform", "cqt_frequencies", "paper_f_min"]

_N_SIGMAS = 5.0  # support of a Gaussian, in standard deviations (exp(-12.5) ~ 4e-6)
_GAINS = ("sqrt_length", "unit")
_PAD_MODES = ("reflect", "constant")


def paper_f_min(sample_rate: float, n_octaves: int) -> float:
    """The lowest centre frequency of the reference experiments: ``0.4 sr / 2**n_octaves``.

    The top bin then sits one bin below ``0.4 sr``: 102.4 Hz to 3.1 kHz for
    5 octaves at 8192 Hz, 34.45 Hz to 16.6 kHz for 9 octaves at 44100 Hz.

    Args:
        sample_rate: sampling rate in Hz.
        n_octaves: number of octaves of the transform.

    Returns:
        The frequency in Hz.
    """
    return 0.4 * float(sample_rate) / 2 ** int(n_octaves)


def cqt_frequencies(f_min: float, n_bins: int, bins_per_octave: int) -> List[float]:
    """Centre frequencies ``f_min * 2**(k / bins_per_octave)``, ``k = 0 .. n_bins - 1``, in Hz."""
    return [f_min * 2.0 ** (k / bins_per_octave) for k in range(n_bins)]


def _smooth_at_least(n: int) -> int:
    """The smallest integer >= ``n`` with no prime factor above 5 (a fast FFT length)."""
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


class ConstantQTransform(nn.Module):
    """Log-compressed constant-Q magnitude: ``(B, C, N) -> (B, C, n_bins, n_frames)``.

    See the module docstring for the filters and the computation.

    Args:
        sample_rate: sampling rate in Hz.
        n_samples: signal length ``N`` the transform is built for (the FFT
            length and the filters depend on it).
        n_octaves: octaves covered; ``n_bins = n_octaves * bins_per_octave``.
        bins_per_octave: bins per octave ``B``.
        hop_length: hop ``h`` between frames, in samples.
        f_min: centre frequency of the lowest bin in Hz; None uses
            :func:`paper_f_min` (``0.4 sr / 2**n_octaves``).
        filter_scale: ``s`` in ``Q = s / (2**(1/B) - 1)``; below 1 widens the
            filters (better time resolution), above 1 narrows them.
        gain: ``"sqrt_length"`` (per-bin gain ``sqrt(Q sr / f_k)``) or ``"unit"``.
        log_eps: output ``log1p(|y| / log_eps)``; None returns ``|y|``.
        pad_mode: ``"reflect"`` or ``"constant"`` (zeros) padding of the signal.
        dtype: real floating dtype of the filters (default
            ``torch.get_default_dtype()``); they are designed in float64 and
            rounded once. The input must have the same dtype; ``.to()`` moves
            and converts the filters (non-persistent buffers, not in the
            state dict).
        check_values: the NaN/Inf check of the input (see
            :mod:`scrapl_graph.checks`).

    Attributes:
        frequencies: centre frequencies in Hz, lowest first (bin order).
        Q: the quality factor.
        n_bins, n_frames: ``n_octaves * bins_per_octave`` and ``N // h + 1``.
        out_shape: ``(n_bins, n_frames)``.
        pad: samples of padding on each side (a multiple of ``h``).
        n_fft: FFT length ``L`` (a multiple of ``h``).

    Raises:
        TypeError: for non-integer sizes, non-numeric frequencies or a
            non-floating dtype.
        ValueError: for non-positive sizes or frequencies, a top bin at or
            above Nyquist, an unknown gain or pad mode, or reflect padding
            that needs more samples than the signal has.
    """

    def __init__(self, sample_rate: float, n_samples: int, n_octaves: int = 5, bins_per_octave: int = 12,
                 hop_length: int = 256, f_min: Optional[float] = None, filter_scale: float = 1.0,
                 gain: str = "sqrt_length", log_eps: Optional[float] = 1e-3, pad_mode: str = "reflect",
                 dtype: Optional[torch.dtype] = None, check_values: Optional[bool] = None):
        super().__init__()
        self.sample_rate = _positive_float(sample_rate, "sample_rate")
        self.n_samples = _positive_int(n_samples, "n_samples")
        self.n_octaves = _positive_int(n_octaves, "n_octaves")
        self.bins_per_octave = _positive_int(bins_per_octave, "bins_per_octave")
        self.hop_length = _positive_int(hop_length, "hop_length")
        f_min = paper_f_min(self.sample_rate, self.n_octaves) if f_min is None else f_min
        self.f_min = _positive_float(f_min, "f_min")
        self.filter_scale = _positive_float(filter_scale, "filter_scale")
        if gain not in _GAINS:
            raise ValueError(f"gain must be one of {_GAINS}, got {gain!r}")
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}")
        self.gain, self.pad_mode = gain, pad_mode
        self.log_eps = None if log_eps is None else _positive_float(log_eps, "log_eps")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point and not dtype.is_complex):
            raise TypeError(f"dtype must be a real floating-point torch.dtype, got {dtype!r}")
        self.check_values = check_values

        self.n_bins = self.n_octaves * self.bins_per_octave
        self.frequencies = cqt_frequencies(self.f_min, self.n_bins, self.bins_per_octave)
        if self.frequencies[-1] >= self.sample_rate / 2:
            raise ValueError(f"the top bin's centre {self.frequencies[-1]:.1f} Hz is not below Nyquist "
                             f"({self.sample_rate / 2:.1f} Hz); lower f_min or n_octaves")
        self.Q = self.filter_scale / (2.0 ** (1.0 / self.bins_per_octave) - 1.0)
        self.n_frames = self.n_samples // self.hop_length + 1
        self.out_shape: Tuple[int, int] = (self.n_bins, self.n_frames)
        self._plan_lengths()
        self._register_filters(dtype)

    # ---------------------------------------------------------------- design
    def _sigma_hz(self, f: float) -> float:
        """Standard deviation of bin ``f``'s Gaussian frequency response, in Hz."""
        return f / (self.Q * math.sqrt(2.0 * math.log(2.0)))

    def _plan_lengths(self) -> None:
        """Padding (``pad``) and FFT length (``n_fft = M * hop``) for the longest filter."""
        h = self.hop_length
        sigma_t = self.sample_rate / (2.0 * math.pi * self._sigma_hz(self.frequencies[0]))  # samples
        self.pad = h * math.ceil(_N_SIGMAS * sigma_t / h)
        if self.pad_mode == "reflect" and self.pad >= self.n_samples:
            raise ValueError(f"reflect padding needs {self.pad} samples on each side but the signal has "
                             f"{self.n_samples}; use a longer signal, a higher f_min or pad_mode='constant'")
        self._n_folds_out = _smooth_at_least(math.ceil((self.n_samples + 2 * self.pad) / h))  # M
        self.n_fft = self._n_folds_out * h

    def _register_filters(self, dtype: torch.dtype) -> None:
        """One buffer per octave: its filters on their band of FFT bins, aligned to multiples of M."""
        M, L, sr = self._n_folds_out, self.n_fft, self.sample_rate
        self._bands: List[Tuple[int, int]] = []
        for g in range(self.n_octaves):
            freqs = self.frequencies[g * self.bins_per_octave:(g + 1) * self.bins_per_octave]
            f_lo = freqs[0] - _N_SIGMAS * self._sigma_hz(freqs[0])
            f_hi = freqs[-1] + _N_SIGMAS * self._sigma_hz(freqs[-1])
            lo = max(0, math.floor(f_lo * L / sr))
            hi = min(L // 2, math.ceil(f_hi * L / sr)) + 1
            lo, hi = M * (lo // M), M * math.ceil(hi / M)
            f = torch.arange(lo, hi, dtype=torch.float64) * (sr / L)
            rows = []
            for fk in freqs:
                sigma = self._sigma_hz(fk)
                g_k = math.sqrt(self.Q * sr / fk) if self.gain == "sqrt_length" else 1.0
                row = g_k * torch.exp(-0.5 * ((f - fk) / sigma) ** 2)
                inside = ((f - fk).abs() <= _N_SIGMAS * sigma) & (f <= sr / 2)
                rows.append(torch.where(inside, row, torch.zeros_like(row)))
            self.register_buffer(f"filters_{g}", torch.stack(rows).to(dtype), persistent=False)
            self._bands.append((lo, hi))

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate:g}, n_samples={self.n_samples}, n_octaves={self.n_octaves}, "
                f"bins_per_octave={self.bins_per_octave}, hop_length={self.hop_length}, "
                f"f_min={self.f_min:.4g}, Q={self.Q:.4g}, gain={self.gain!r}, log_eps={self.log_eps}, "
                f"out_shape={self.out_shape}")

    # ----------------------------------------------------------------- input
    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the filters (and of the input this transform accepts)."""
        return self.filters_0.dtype

    @property
    def device(self) -> torch.device:
        return self.filters_0.device

    def _check(self, x: object) -> Tensor:
        x = check_audio(x, "x")
        if x.dtype != self.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the filters are {self.dtype}; "
                            f"convert the module with .to({x.dtype}) or the input with .to({self.dtype})")
        if x.shape[-1] != self.n_samples:
            raise ValueError(f"x has {x.shape[-1]} samples, but this transform was built for "
                             f"n_samples={self.n_samples}")
        if x.device != self.device:
            raise ValueError(f"x is on {x.device} but the filters are on {self.device}; "
                             f"move the module with .to(device)")
        check_finite(x, "x", self.check_values)
        return x

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        """Constant-Q magnitude of ``x``, log-compressed.

        Args:
            x: ``(B, C, N)`` real audio with ``N == n_samples``, in the
                filters' dtype and on their device.

        Returns:
            ``(B, C, n_bins, n_frames)``: ``log1p(|y| / log_eps)`` (or ``|y|``
            when ``log_eps`` is None), bins from low to high frequency, frame
            ``m`` centred on sample ``m * hop_length``.

        Raises:
            TypeError: for a non-tensor, an integer or complex dtype, or a
                dtype other than the filters'.
            ValueError: for a shape other than ``(B, C, n_samples)`` with
                ``B, C >= 1``, another device, or NaN/Inf values.
        """
        x = self._check(x)
        B, C, N = x.shape
        h, M = self.hop_length, self._n_folds_out
        xp = F.pad(x.reshape(B * C, 1, N), (self.pad, self.pad), mode=self.pad_mode)
        spectrum = torch.fft.rfft(xp, n=self.n_fft)  # (BC, 1, L/2 + 1)
        top = max(hi for _, hi in self._bands)
        spectrum = F.pad(spectrum, (0, max(0, top - spectrum.shape[-1])))  # zeros at negative frequencies
        folded = []
        for g, (lo, hi) in enumerate(self._bands):
            band = spectrum[..., lo:hi] * getattr(self, f"filters_{g}")  # (BC, B_g, hi - lo)
            folded.append(band.reshape(B * C, -1, (hi - lo) // M, M).sum(dim=2))
        y = torch.fft.ifft(torch.cat(folded, dim=1), dim=-1)  # y[m h] * h, on the padded axis
        first = self.pad // h
        magnitude = y[..., first:first + self.n_frames].abs() / h
        out = magnitude if self.log_eps is None else torch.log1p(magnitude / self.log_eps)
        return out.reshape(B, C, self.n_bins, self.n_frames)
