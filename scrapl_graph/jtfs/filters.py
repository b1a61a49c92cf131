"""Morlet filterbank design in the Fourier domain (float64; each filter from :mod:`.morlet`).

The conventions are those of kymatio's scattering transforms, so that
coefficients agree with theirs:

* A Morlet wavelet of center frequency ``xi`` and bandwidth ``sigma`` (both in
  cycles per sample, Nyquist = 0.5) is, in Fourier,
  ``psi(w) = g(w - xi) - kappa g(w)`` with ``g(w) = exp(-w^2 / (2 sigma^2))``,
  periodized over the unit interval, ``kappa`` chosen so that ``psi(0) = 0``,
  and scaled to unit L1 norm in time. The low-pass ``phi`` is ``g`` alone.
* Center frequencies follow Anden's generator: a geometric progression of
  ratio ``2^(1/Q)`` from ``xi_max`` down to the elbow where the bandwidth
  reaches ``sigma0 / 2^J``, then ``Q - 1`` filters in arithmetic progression
  with that constant bandwidth.
* Each filter carries ``j``, the largest dyadic subsampling its output
  tolerates without aliasing, and ``levels``: the filter periodized (summed)
  over ``2^k`` blocks, i.e. the same filter applied to a signal already
  subsampled by ``2^k``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, List, Sequence, Tuple

import numpy as np

from .morlet import morlet_spectrum

# Shared design constants of the filterbank (kymatio's defaults).
R_PSI = math.sqrt(0.5)  # adjacent wavelets meet at this fraction of their peak
SIGMA0 = 0.1  # bandwidth of the low-pass of support T is SIGMA0 / T
ALPHA = 5.0  # a filter is "band-limited" at xi + ALPHA * sigma


@dataclass
class Filter:
    """One filter in the Fourier domain.

    Attributes:
        xi: center frequency in cycles per sample (0 for a low-pass; negative
            for a spin -1 frequential wavelet).
        sigma: bandwidth in cycles per sample.
        j: log2 of the largest subsampling its output tolerates.
        levels: ``levels[k]`` is the filter for a signal subsampled by ``2^k``.
    """

    xi: float
    sigma: float
    j: int
    levels: List[np.ndarray] = field(default_factory=list)


def morlet_1d(N: int, xi: float | None, sigma: float) -> np.ndarray:
    """Fourier transform of a Morlet wavelet (or of a Gaussian if ``xi`` is None).

    Args:
        N: number of frequency bins (length of the signal it filters).
        xi: center frequency in cycles per sample, or None for the low-pass.
        sigma: bandwidth in cycles per sample.

    Returns:
        Real array of length N, sampled at ``np.fft.fftfreq(N)``, with unit L1
        norm of its inverse transform; designed by :func:`.morlet.morlet_spectrum`.
    """
    return morlet_spectrum(N, xi, sigma).numpy()


def sigma_of_xi(xi: float, Q: int, r: float = R_PSI) -> float:
    """Bandwidth of a wavelet at ``xi`` in a family of Q wavelets per octave."""
    factor = 2.0 ** (-1.0 / Q)
    return xi * (1 - factor) / (1 + factor) / math.sqrt(2 * math.log(1.0 / r))


def xi_max(Q: int) -> float:
    """Center frequency of the highest wavelet of a family with Q per octave."""
    return max(1.0 / (1.0 + 2.0 ** (3.0 / Q)), 0.35)


def max_subsampling(xi: float, sigma: float, alpha: float = ALPHA) -> int:
    """Largest j such that the band [xi - alpha sigma, xi + alpha sigma] fits below 2^-(j+1)."""
    edge = min(abs(xi) + alpha * sigma, 0.5)
    return int(math.floor(-math.log2(edge)) - 1)


def temporal_support(h_f: np.ndarray, criterion: float = 1e-3) -> int:
    """Half support N such that cutting the filters to [-N, N] loses at most ``criterion`` in L1.

    Args:
        h_f: filters in Fourier, shape (n_filters, length).
        criterion: tolerated L1 residual.
    """
    h = np.fft.ifft(h_f, axis=1)
    half = h.shape[1] // 2
    residual = np.flip(np.cumsum(np.flip(np.abs(h)[:, :half], axis=1), axis=1), axis=1)
    ok = np.where(np.max(residual, axis=0) <= criterion)[0]
    return int(ok.min() + 1) if ok.size else half


def center_frequencies(J: int, Q: int, sigma0: float = SIGMA0, r: float = R_PSI) -> Iterator[Tuple[float, float]]:
    """(xi, sigma) pairs of a wavelet family, from high to low frequency (Anden's generator)."""
    xi = xi_max(Q)
    sigma = sigma_of_xi(xi, Q, r)
    sigma_min = sigma0 / 2**J
    if sigma <= sigma_min:
        xi = sigma
    else:
        yield xi, sigma
        while sigma > sigma_min * 2.0 ** (1.0 / Q):
            xi /= 2.0 ** (1.0 / Q)
            sigma /= 2.0 ** (1.0 / Q)
            yield xi, sigma
    elbow = xi
    for _ in range(Q - 1):
        xi -= elbow / Q
        yield xi, sigma_min


def periodize(h: np.ndarray, k: int) -> np.ndarray:
    """The filter for a signal subsampled by 2^k: sum of its 2^k blocks."""
    return h.reshape(2**k, -1).sum(axis=0)


def _with_levels(N: int, xi: float, sigma: float, n_levels: int) -> Filter:
    h = morlet_1d(N, xi, sigma)
    return Filter(xi, sigma, max_subsampling(xi, sigma), [periodize(h, k) for k in range(max(n_levels, 1))])


def temporal_filterbanks(N: int, J: int, Q: Sequence[int], T: float) -> Tuple[Filter, List[List[Filter]]]:
    """Low-pass and wavelet filterbanks of a scattering transform.

    Args:
        N: padded signal length (a power of two).
        J: number of octaves.
        Q: wavelets per octave at each order, e.g. ``(Q1, Q2)``; may be empty.
        T: support of the low-pass.

    Returns:
        ``(phi, [psi_order1, psi_order2, ...])``. A wavelet of order m > 1 is
        kept at every level a wavelet of order m - 1 with smaller j can use.
    """
    log2_T = int(math.floor(math.log2(T)))
    banks: List[List[Filter]] = []
    previous_max_j = 0
    for Q_layer in Q:
        bank = []
        for xi, sigma in center_frequencies(J, Q_layer):
            j = max_subsampling(xi, sigma)
            bank.append(_with_levels(N, xi, sigma, min(previous_max_j, j, 1 + log2_T)))
        previous_max_j = max([previous_max_j] + [f.j for f in bank])
        banks.append(bank)
    phi_h = morlet_1d(N, None, SIGMA0 / T)
    n_levels = max(previous_max_j, 1 + log2_T)
    phi = Filter(0.0, SIGMA0 / T, log2_T, [periodize(phi_h, k) for k in range(n_levels)])
    return phi, banks


def frequential_filterbank(N_fr: int, J_fr: int, Q_fr: int, F: float) -> Tuple[Filter, List[Filter]]:
    """Filters applied across the log-frequency axis of the scalogram.

    Returns:
        ``(phi_F, psis)`` where ``phi_F`` is the averaging low-pass of support F
        and ``psis[0]`` is the low-pass of support ``2^J_fr`` (spin 0),
        followed by the spin +1 wavelets, then the spin -1 wavelets (negative
        xi), in the order of the path keys ``n_fr``.
    """
    phi_F, _ = temporal_filterbanks(N_fr, J_fr, (), F)
    phi_fr, (positive,) = temporal_filterbanks(N_fr, J_fr, (Q_fr,), 2**J_fr)
    negative = []
    for f in positive:
        h = morlet_1d(N_fr, -f.xi, f.sigma)
        negative.append(Filter(-f.xi, f.sigma, max_subsampling(-f.xi, f.sigma), [h]))
    return phi_F, [phi_fr] + positive + negative
