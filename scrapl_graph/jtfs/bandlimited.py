"""Filtering and subsampling in Fourier, touching only the bins a filter occupies.

A wavelet of scale j is negligible outside a band of about 2^-j of the
spectrum, so multiplying the whole spectrum by it and then periodizing
(subsampling in time) wastes most of the work. Here each batch of filters
keeps only the bins where one of them exceeds ``REL_TOL`` times its peak,
with the position of every kept bin after periodization. The result equals
the dense product-then-periodize up to the dropped tails (below float64
rounding of the largest terms).

Inputs are real signals given by their half spectrum (``torch.fft.rfft``):
a kept bin above Nyquist is read as the conjugate of its mirror, with the
sign of the imaginary part folded into the stored filter values.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .ops import modulus, rfft
from .wavelet_modulus import wavelet_modulus_spectrum

REL_TOL = 1e-12
#: Complex elements of one slice of the first-order wavelet modulus (batch x filters x time).
SLICE_ELEMENTS = 2**22


class BandLimitedBank(nn.Module):
    """Named batches of real Fourier-domain filters stored on their support only.

    Each entry ``name`` holds a batch of filters of common length ``n`` that
    are applied to spectra of length ``n`` and subsampled by ``factor``.
    """

    def __init__(self):
        super().__init__()
        self._meta: Dict[str, tuple] = {}

    def add(self, name: str, filters: np.ndarray, factor: int, dtype: torch.dtype = torch.float32) -> None:
        """Register filters (n_filters, n) applied before a subsampling by ``factor``."""
        filters = np.atleast_2d(filters)
        n = filters.shape[-1]
        peak = np.abs(filters).max(axis=-1, keepdims=True)
        peak[peak == 0] = 1.0
        keep = np.nonzero((np.abs(filters) > REL_TOL * peak).any(axis=0))[0]
        if keep.size == 0:
            keep = np.array([0])
        m = n // factor
        # Order kept bins by their position after periodization, so that when
        # positions do not collide the output is the product with zero gaps.
        keep = keep[np.argsort(keep % m, kind="stable")]
        mirrored = keep > n // 2
        half_idx = np.where(mirrored, n - keep, keep)
        values = filters[:, keep] / factor
        # (re, im) multipliers: conj(X[n - k]) * h = (re * h, -im * h).
        values = np.stack([values, np.where(mirrored, -values, values)], axis=-1)
        self.register_buffer(f"{name}_idx", torch.as_tensor(half_idx, dtype=torch.long), persistent=False)
        self.register_buffer(f"{name}_pos", torch.as_tensor(keep % m, dtype=torch.long), persistent=False)
        self.register_buffer(f"{name}_val", torch.as_tensor(values, dtype=dtype), persistent=False)
        pos = keep % m
        runs = None
        if np.unique(pos).size == pos.size:
            breaks = np.nonzero(np.diff(pos) != 1)[0] + 1
            runs = [(int(r[0]), int(r[-1]) + 1) for r in np.split(pos, breaks)]
        self._meta[name] = (n, m, runs)

    def __contains__(self, name: str) -> bool:
        return name in self._meta

    def modulus_spectrum(self, x_half: Tensor, name: str, rows: slice) -> Tensor:
        """``rfft(|ifft(apply(x_half, name, rows))|)``: half spectra of the moduli (..., n_filters, m // 2 + 1).

        When the kept bins form one run ``[a, b)``, the run is transformed as
        if it started at bin 0 (a unit phase in time, which the modulus
        removes), in one fused autograd node (see :mod:`.wavelet_modulus`).
        """
        n, m, runs = self._meta[name]
        if runs is None or len(runs) != 1:
            return rfft(modulus(torch.fft.ifft(self.apply(x_half, name, rows))))
        self._check_length(x_half, n)
        idx, val = getattr(self, f"{name}_idx"), getattr(self, f"{name}_val")[rows]
        # Large batches go in slices whose buffers stay below glibc's largest mmap
        # threshold (32 MB), so that freed buffers are reused instead of faulted in anew.
        per_slice = max(1, SLICE_ELEMENTS // (val.shape[0] * m))
        if x_half.shape[0] <= per_slice:
            return wavelet_modulus_spectrum(x_half, idx, val, m)
        return torch.cat([wavelet_modulus_spectrum(x, idx, val, m) for x in x_half.split(per_slice)])

    @staticmethod
    def _check_length(x_half: Tensor, n: int) -> None:
        if x_half.shape[-1] != n // 2 + 1:
            raise RuntimeError(f"internal: half spectrum of length {x_half.shape[-1]} for filters of length {n}")

    def _product(self, x_half: Tensor, name: str, rows) -> Tensor:
        n = self._meta[name][0]
        idx = getattr(self, f"{name}_idx")
        val = getattr(self, f"{name}_val")
        if rows is not None:
            val = val[rows]
        self._check_length(x_half, n)
        selected = torch.view_as_real(x_half.index_select(-1, idx))
        return torch.view_as_complex((selected * val).contiguous())

    def apply(self, x_half: Tensor, name: str, rows: Sequence[int] | slice | None = None) -> Tensor:
        """Filter real signals given by ``x_half`` and subsample: complex spectra (..., n_filters, n // factor).

        Args:
            x_half: ``rfft`` of real signals of length n, shape (..., 1 or
                n_filters, n // 2 + 1); the second-to-last axis broadcasts
                against the filters.
            name: entry to use.
            rows: subset of the entry's filters (default: all).
        """
        n, m, runs = self._meta[name]
        product = self._product(x_half, name, rows)
        if runs is None:
            pos = getattr(self, f"{name}_pos")
            out_shape = product.shape[:-1] + (m,)
            return torch.zeros(out_shape, dtype=product.dtype, device=product.device).index_add(-1, pos, product)
        pieces, cursor, offset = [], 0, 0
        for a, b in runs:
            if a > cursor:
                pieces.append(product.new_zeros(product.shape[:-1] + (a - cursor,)))
            pieces.append(product.narrow(-1, offset, b - a))
            offset += b - a
            cursor = b
        if cursor < m:
            pieces.append(product.new_zeros(product.shape[:-1] + (m - cursor,)))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
