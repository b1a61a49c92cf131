r"""Time averaging by phi_T as one small matrix, when only a few output frames are kept.

Averaging a signal z of length m (at resolution 2^j) by the low-pass phi_T
and subsampling to resolution 2^log2_T is a circular convolution followed
by a decimation by f = 2^(log2_T - j):

    (z *_t phi_T)[f c] = sum_t z[t] h[(f c - t) mod m],   h = ifft(phi_hat_j),

and the transform keeps only the frames c in [start, end) that cover the
unpadded signal. With few frames (``T`` of the order of the signal length,
as in the paper's configurations) a real matrix A[t, c] of m rows and
``end - start`` columns does this in one product, where the route through
the Fourier domain needs a real FFT of length m per row for a handful of
output bins. Both give the same operator (up to the bins below 1e-12 of
the filter's peak that the band-limited route drops).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

# The product costs 2 m C flops per row against about 5 m log2(m) for a real
# FFT and its inverse at the output size; above this many columns the
# Fourier route wins.
MAX_COLUMNS = 32
# Bound on the matrix size (elements) so that long signals keep the Fourier route.
MAX_ELEMENTS = 2**23


def averaging_matrix(phi_hat: np.ndarray, factor: int, start: int, end: int) -> Optional[np.ndarray]:
    """The matrix A (m, end - start) of ``z -> (z *_t phi_T)[factor * c]`` for c in [start, end), or None.

    Args:
        phi_hat: the low-pass in Fourier at the input's resolution, length m (real, float64).
        factor: decimation from the input's resolution to the output's.
        start, end: output frames kept.

    Returns:
        Float64 array, or None when the product would cost more than the
        Fourier route (more than :data:`MAX_COLUMNS` frames, or more than
        :data:`MAX_ELEMENTS` entries).
    """
    m = phi_hat.shape[-1]
    columns = end - start
    if columns > MAX_COLUMNS or m * columns > MAX_ELEMENTS:
        return None
    h = np.fft.ifft(phi_hat).real
    t = np.arange(m)[:, None]
    c = np.arange(start, end)[None, :]
    return h[(factor * c - t) % m]


def averaging_matrices(phi_levels: Sequence[np.ndarray], resolutions: Sequence[int], log2_T: int, start: int,
                       end: int) -> Dict[int, np.ndarray]:
    """The matrices of the time average from each resolution 2^j in ``resolutions`` where the product pays.

    Args:
        phi_levels: the low-pass at each resolution (``phi_levels[j]`` for a signal subsampled by 2^j).
        log2_T: the output resolution.
        start, end: output frames kept.
    """
    out = {}
    for j in resolutions:
        a = averaging_matrix(phi_levels[j], 2 ** (log2_T - j), start, end)
        if a is not None:
            out[j] = a
    return out
