r"""The Morlet wavelet in the Fourier domain, in torch: one design for the fixed and the learnable filterbanks.

A Morlet wavelet of center frequency xi and bandwidth sigma (cycles per
sample, Nyquist = 0.5), sampled on the N bins w_i = i / N and periodized
over P periods on each side, is

    gabor(w) = mean_{q = 1-P}^{P-1} exp(-(w + q - xi)^2 / (2 sigma^2)),
    low(w)   = mean_{q = 1-P}^{P-1} exp(-(w + q)^2 / (2 sigma^2))   (for P = 1: at the centred bins),
    psi(w)   = (gabor(w) - kappa low(w)) / norm,   kappa = gabor(0) / low(0),

so that psi(0) = 0; ``norm`` is the L1 norm of its inverse DFT (kymatio's
convention). The low-pass phi is ``low / norm``. The design evaluates psi at
any set of bins, so a learnable filterbank regenerates only the bins a
band-limited filter keeps, differentiably in xi and sigma.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor


def periods(sigma: float, eps: float = 1e-7) -> int:
    """Periods P (at most 5) beyond which the Gaussian of width sigma is below eps."""
    return min(int(math.ceil(math.sqrt(-2.0 * sigma**2 * math.log(eps)) + 1)), 5)


def gaussian(distance: Tensor, sigma, dtype: torch.dtype = torch.float64) -> Tensor:
    """exp(-distance^2 / (2 sigma^2)); the distance in bandwidths is formed in float64 (a narrow
    filter's centre needs those digits) and only the exponential runs in ``dtype``."""
    return torch.exp(-0.5 * (distance / sigma).to(dtype) ** 2)


def grid_frequencies(bins: Tensor, N: int, centred: bool = False) -> Tensor:
    """w = bins / N (float64); ``centred`` maps them to [-0.5, 0.5) (a single period's low-pass)."""
    w = bins.to(torch.float64) / N
    return torch.where(bins >= (N + 1) // 2, w - 1.0, w) if centred else w


def _periodized_gaussian(w: Tensor, center, sigma, P: int, dtype: torch.dtype = torch.float64) -> Tensor:
    # Periods on the leading axis: the mean then runs over contiguous rows.
    shifts = torch.arange(1 - P, P, dtype=w.dtype, device=w.device).reshape((-1,) + (1,) * w.ndim)
    return gaussian(w + shifts - center, sigma, dtype).mean(dim=0)


def low_pass_correction(xi: Tensor, sigma: Tensor, periods: Tensor, p_max: int) -> Tensor:
    """kappa = gabor(0) / low(0) of each filter (float64), so that psi(0) = 0.

    Args:
        xi, sigma: (n_filters,) or 0-d float64 tensors.
        periods: P of each filter (float64, same shape); p_max: the largest, as an int.
    """
    q = torch.arange(1 - p_max, p_max, dtype=torch.float64, device=xi.device).reshape((-1,) + (1,) * xi.ndim)
    weight = (q.abs() < periods).to(torch.float64)  # each filter's own periods; its means share 2P - 1
    return (weight * gaussian(q - xi, sigma)).sum(dim=0) / (weight * gaussian(q, sigma)).sum(dim=0)


def morlet_unnormalized(bins: Tensor, N: int, xi: Optional[Tensor], sigma: Tensor, P: int,
                        dtype: torch.dtype = torch.float64) -> Tensor:
    """``gabor - kappa low`` (or ``low`` when xi is None) at integer ``bins`` of an N-point grid.

    Args:
        bins: integer tensor of bins in [0, N), any shape.
        xi, sigma: float64 0-d tensors (cycles per sample); differentiable.
        P: periods of the periodization (see :func:`periods`), frozen by the caller.
        dtype: of the result and of the exponentials (float64 for the design, the
            transform's dtype when learnable filters are regenerated).
    """
    low = _periodized_gaussian(grid_frequencies(bins, N, centred=P == 1), 0.0, sigma, P, dtype)
    if xi is None:
        return low
    kappa = low_pass_correction(xi, sigma, torch.tensor(float(P), dtype=torch.float64, device=xi.device), P)
    return _periodized_gaussian(grid_frequencies(bins, N), xi, sigma, P, dtype) - kappa.to(dtype) * low


# Beyond this many bandwidths from its centre a Gaussian is exactly 0 in float64 (exp(-760) underflows).
UNDERFLOW_BANDWIDTHS = 39.0


def support_bins(N: int, centers, sigma: float, P: int) -> Tensor:
    """The bins of an N-point grid where Gaussians of width sigma at ``centers``, periodized over P periods,
    can be non-zero (a superset, sorted); every other bin of the filter is exactly 0."""
    half = UNDERFLOW_BANDWIDTHS * sigma * N
    # One period more on each side: the centred grid of P = 1 wraps.
    spans = sorted((max(0, math.floor((c + q) * N - half)), min(N, math.ceil((c + q) * N + half) + 1))
                   for c in centers for q in range(-P, P + 1))
    merged = []
    for lo, hi in spans:
        if lo >= hi:
            continue
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return torch.cat([torch.arange(lo, hi) for lo, hi in merged]) if merged else torch.zeros(0, dtype=torch.long)


def morlet_spectrum(N: int, xi: Optional[float], sigma: float) -> Tensor:
    """The whole filter on the N bins, normalized to unit L1 norm in time (float64 tensor).

    Only the bins of :func:`support_bins` are evaluated: a narrow filter of a long grid costs its support.
    """
    sigma_t = torch.tensor(float(sigma), dtype=torch.float64)
    xi_t = torch.tensor(float(xi), dtype=torch.float64) if xi else None
    P = periods(float(sigma))
    bins = support_bins(N, (float(xi) if xi else 0.0, 0.0), float(sigma), P)
    h = torch.zeros(N, dtype=torch.float64)
    h[bins] = morlet_unnormalized(bins, N, xi_t, sigma_t, P)
    return h / l1_norm(h)


def l1_norm(h: Tensor) -> Tensor:
    """L1 norm in time of a filter given on its N bins in Fourier (kymatio's normalisation constant)."""
    return torch.fft.ifft(h).abs().sum()
