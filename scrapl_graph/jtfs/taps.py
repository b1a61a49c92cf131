r"""Morlet values at chosen bins, for many filters in one vectorised evaluation.

A learnable filterbank (:mod:`.parametric`) regenerates, at every step, each
filter's values at the bins its band-limited storage keeps. By
:mod:`.morlet`, the value of filter f at bin t of an N-point grid
(w_t = t / N) is a sum of Gaussian terms,

    h_f(t) = c_f [ sum_{|q| < P_f} g(w_t + q - xi_f) - kappa_f sum_{|q| < P_f} g(w'_t + q) ],
    g(d) = exp(-d^2 / (2 sigma_f^2)),   c_f = 1 / ((2 P_f - 1) norm_f),

with w'_t the bin centred on [-0.5, 0.5) when P_f = 1 and kappa_f the
low-pass correction that makes h_f(0) = 0 (the design and its parts are
:mod:`.morlet`'s; this module only lays the terms out). :class:`TapTerms` lists every
term once, as flat tensors, evaluates them all with a handful of elementwise
operations and sums them into their places: a cost proportional to the
number of taps, with no Python loop over filters.

A term is dropped at construction when, for every centre frequency and
bandwidth the parametrisation admits (xi_f in [lo_f, hi_f], sigma_f at most
``sigma_max_f``), its Gaussian stays below exp(-REACH^2 / 2), about 1e-18 of
the filter's peak: most low-pass corrections of band-pass filters and most
periodization shifts, which are zero to float64 precision.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from .morlet import gaussian, grid_frequencies, low_pass_correction

#: Distance (in the largest admissible bandwidth) beyond which a term is dropped: exp(-REACH^2 / 2) < 1e-18.
REACH = 9.1


def _distance(a: Tensor, lo: float, hi: float) -> Tensor:
    """Distance from each point of ``a`` to the interval [lo, hi]."""
    return (lo - a).clamp_min(0) + (a - hi).clamp_min(0)


class TapTerms(nn.Module):
    """The Gaussian terms of a set of filters at their taps, evaluated together.

    Args:
        taps: per tap set, ``(f, bins, dst)``: the filter's index, the
            full-grid bins to evaluate (long) and each one's position in the
            flat output.
        N: the grid size.
        periods: P_f of each filter (a sequence of ints).
        lo, hi: the admissible range of each filter's centre frequency (float64).
        sigma_max: an upper bound of each filter's bandwidth (float64).
        size: the length of the flat output.
    """

    def __init__(self, taps: Sequence[Tuple[int, Tensor, Tensor]], N: int, periods: Sequence[int],
                 lo: Tensor, hi: Tensor, sigma_max: Tensor, size: int):
        super().__init__()
        self.size = size
        parts = {"gabor": ([], [], []), "low": ([], [], [])}
        for f, bins, dst in taps:
            P = periods[f]
            w, centred = grid_frequencies(bins, N), grid_frequencies(bins, N, centred=P == 1)
            reach = REACH * float(sigma_max[f])
            for q in range(1 - P, P):
                for kind, a, (c_lo, c_hi) in (("gabor", w + q, (float(lo[f]), float(hi[f]))),
                                              ("low", centred + q, (0.0, 0.0))):
                    keep = _distance(a, c_lo, c_hi) <= reach
                    for store, value in zip(parts[kind], (a[keep], torch.full((int(keep.sum()),), f), dst[keep])):
                        store.append(value)
        for kind, (a, f, dst) in parts.items():
            self.register_buffer(f"{kind}_at", torch.cat(a) if a else torch.zeros(0, dtype=torch.float64),
                                 persistent=False)
            self.register_buffer(f"{kind}_filter", torch.cat(f) if f else torch.zeros(0, dtype=torch.long),
                                 persistent=False)
            self.register_buffer(f"{kind}_dst", torch.cat(dst) if dst else torch.zeros(0, dtype=torch.long),
                                 persistent=False)
        self.register_buffer("periods", torch.tensor(list(periods), dtype=torch.float64), persistent=False)
        self.p_max = max(periods)  # kept on the host: no device read per call

    @property
    def n_terms(self) -> int:
        return self.gabor_at.numel() + self.low_at.numel()

    def forward(self, xi: Tensor, sigma: Tensor, norms: Tensor, dtype: torch.dtype) -> Tensor:
        """The flat output (``size``,) in ``dtype``: every tap's value, differentiable in xi and sigma (float64)."""
        scale = 1.0 / ((2 * self.periods - 1) * norms)
        kappa = low_pass_correction(xi, sigma, self.periods, self.p_max)
        out = torch.zeros(self.size, dtype=dtype, device=xi.device)
        for at, f, dst, centre, weight in ((self.gabor_at, self.gabor_filter, self.gabor_dst, xi, scale),
                                           (self.low_at, self.low_filter, self.low_dst, None, -kappa * scale)):
            if not at.numel():
                continue
            values = gaussian(at if centre is None else at - centre[f], sigma[f], dtype)
            out = out.index_add(0, dst, values * weight.to(dtype)[f])
        return out
