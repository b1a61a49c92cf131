"""The operators across log-frequency: each frequential filter as one matrix, and the rows it reaches.

The log-frequency axis is short (tens of bins), so zero-padding, filtering
by a frequential wavelet (or the low-pass phi_F) and subsampling is one
dense complex matrix per filter, applied by a matrix product.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

import numpy as np
import torch

from .filters import Filter
from .ops import frequential_operator

# Output rows of a frequential operator below this fraction of its peak
# response are treated as zero: a tenth of the computation dtype's rounding.
ROW_TOL = {torch.float64: 1e-13, torch.float32: 1e-8, torch.float16: 1e-4, torch.bfloat16: 1e-3}


def frequential_operators(n_fr_padded: int, n_in: int, psi_fr: List[Filter], k_fr: List[int],
                          n_lambda1s: Iterable[int], dtype: torch.dtype
                          ) -> Tuple[Dict[str, np.ndarray], Dict[Tuple[int, int], np.ndarray]]:
    """The operators ``psi_fr_{n}`` as (re, im) arrays (n_out, n_in, 2), and their supports.

    Returns:
        ``(operators, support)``: ``support[(n_fr, n)]`` are the output rows
        that the first n inputs reach above :data:`ROW_TOL` (a path of small
        j2 sees few lambda1, so most of the zero-padded axis stays zero and
        is skipped).
    """
    operators, support = {}, {}
    for n_fr, f in enumerate(psi_fr):
        w = frequential_operator(n_fr_padded, n_in, f.levels[0], 2 ** k_fr[n_fr]).numpy()
        operators[f"psi_fr_{n_fr}"] = np.stack([w.real, w.imag], axis=-1)
        magnitude = np.abs(w)
        for n in sorted(set(n_lambda1s) | {n_in}):
            support[(n_fr, n)] = np.nonzero(magnitude[:, :n].max(axis=1) > ROW_TOL.get(dtype, 1e-13) * magnitude.max())[0]
    return operators, support


def frequency_averages(n_fr_padded: int, phi_F: Filter, resolutions: Iterable[int], log2_F: int) -> Dict[str, np.ndarray]:
    """The real low-pass operators ``phi_fr_{k}`` from resolution 2^k to 2^log2_F."""
    out = {}
    for k in sorted(set(resolutions)):
        n = n_fr_padded // 2**k
        out[f"phi_fr_{k}"] = frequential_operator(n, n, phi_F.levels[k], 2 ** (log2_F - k)).real.numpy()
    return out
