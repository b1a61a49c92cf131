r"""Learnable Morlet filterbanks: centre frequencies and bandwidths as parameters, filters regenerated from them.

Each wavelet family of the JTFS (first order ``psi1``, second order ``psi2``,
frequential ``psi_fr``) gets a :class:`MorletFamily`: the centre frequency
xi_k and bandwidth sigma_k of each wavelet, as functions of unconstrained
tensors (a_k, b_k),

    xi_k    = lo_k + (hi_k - lo_k) s(a_k),
    sigma_k = m(xi_k - S_lo_k, S_hi_k - xi_k) / alpha_k s(b_k),
    s(u)    = eps + (1 - 2 eps) sigmoid(u),   m(u, v) = (u^-8 + v^-8)^(-1/8),

(m is a smooth lower bound of min(u, v), so that sigma has no kink where the
two edges are equally near), which keeps, by construction and for any (a, b):

* the centre frequencies ordered: xi_k stays between the midpoints to its
  initial neighbours, ``(lo_k, hi_k)``, disjoint intervals;
* every filter inside its frozen support: ``xi_k +- alpha_k sigma_k`` stays
  in ``(S_lo_k, S_hi_k)``, the band its stored bins cover (7 initial
  bandwidths on each side of the initial centre) intersected with what its
  frozen subsampling allows without aliasing (below ``2^-(j+1)``), and for
  frequential wavelets above 0 (one spin per filter); ``alpha_k`` is the
  design's ALPHA = 5 bandwidths, smaller only where the initial filter
  already reaches closer to an edge;
* bandwidths positive.

At initialisation (a, b) invert these maps, so the regenerated filters equal
the fixed design (to float64 rounding). Supports, subsampling, padding and
the path set are frozen at construction, so path indices keep their meaning.

Normalisation: the fixed design scales each filter to unit L1 norm in time,
which needs a full-length inverse FFT per filter. The regenerated filters
keep each filter's initial normalisation constant instead: for a Gaussian of
unit peak in frequency the L1 norm in time does not depend on its bandwidth
or centre, so the constant changes only through the small ``kappa`` term
and the sampling; ``normalisation_drift`` measures it.
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from .filters import ALPHA, Filter
from .morlet import l1_norm, morlet_unnormalized, periods
from .ops import frequential_operator
from .taps import TapTerms

#: Width (in initial bandwidths) of the frozen support on each side of a filter's initial centre.
SUPPORT_WIDTH = 7.0
#: Stored bins of a filter are regenerated only where the initial filter exceeds this fraction of its peak.
TAP_TOL = 1e-15
#: Margin of the squashing map, so that neither bound is ever reached in floating point.
EPS = 1e-6
FAMILIES = ("psi1", "psi2", "psi_fr")


def _squash(u: Tensor) -> Tensor:
    return EPS + (1 - 2 * EPS) * torch.sigmoid(u)


def _soft_min(u: Tensor, v: Tensor, p: float = 8.0) -> Tensor:
    """(u^-p + v^-p)^(-1/p): below min(u, v) for positive u, v, and smooth."""
    return (u.pow(-p) + v.pow(-p)).pow(-1.0 / p)


def _l1_norms(spectra: Sequence[Tensor]) -> Tensor:
    return torch.stack([l1_norm(h) for h in spectra])


def _unsquash(s: Tensor) -> Tensor:
    s = (s - EPS) / (1 - 2 * EPS)
    return torch.log(s) - torch.log1p(-s)


class MorletFamily(nn.Module):
    """Learnable (xi, sigma) of a family of Morlet wavelets, inside frozen bounds by construction.

    Args:
        filters: the family's initial filters, ordered by decreasing centre
            frequency (absolute value: spin -1 wavelets mirror spin +1 ones).
        n_grid: the number of bins the filters are designed on.
        analytic: also keep ``xi - alpha sigma > 0`` (frequential wavelets).
        trainable: whether the optimizer may move this family.
    """

    def __init__(self, filters: Sequence[Filter], n_grid: int, analytic: bool = False, trainable: bool = True):
        super().__init__()
        xi0 = torch.tensor([abs(f.xi) for f in filters], dtype=torch.float64)
        sigma0 = torch.tensor([f.sigma for f in filters], dtype=torch.float64)
        edge = torch.tensor([2.0 ** -(f.j + 1) for f in filters], dtype=torch.float64)
        s_hi = torch.minimum(xi0 + SUPPORT_WIDTH * sigma0, edge)
        s_lo = xi0 - SUPPORT_WIDTH * sigma0
        if analytic:
            s_lo = s_lo.clamp_min(0.0)
        mid = (xi0[1:] + xi0[:-1]) / 2
        inf = torch.tensor([math.inf], dtype=torch.float64)
        lo = torch.maximum(torch.cat([mid, -inf]), s_lo)
        hi = torch.minimum(torch.cat([inf, mid]), s_hi)
        if not bool(((lo < xi0) & (xi0 < hi)).all()):
            raise ValueError("internal: an initial centre frequency lies outside its frozen bounds")
        reach = _soft_min(xi0 - s_lo, s_hi - xi0) / sigma0
        alpha = torch.clamp(0.999 * reach, max=ALPHA)
        for name, value in dict(lo=lo, hi=hi, s_lo=s_lo, s_hi=s_hi, alpha=alpha, xi0=xi0, sigma0=sigma0).items():
            self.register_buffer(name, value, persistent=False)
        self.raw_xi = nn.Parameter(_unsquash((xi0 - lo) / (hi - lo)), requires_grad=trainable)
        self.raw_sigma = nn.Parameter(_unsquash(sigma0 / self._sigma_max(xi0)), requires_grad=trainable)
        self.periods = [periods(f.sigma) for f in filters]
        self.n_grid = n_grid

    def _sigma_max(self, xi: Tensor) -> Tensor:
        return _soft_min(xi - self.s_lo, self.s_hi - xi) / self.alpha

    def forward(self) -> tuple:
        """(xi, sigma), float64 tensors of shape (n_filters,); xi as absolute values."""
        xi = self.lo + (self.hi - self.lo) * _squash(self.raw_xi)
        return xi, self._sigma_max(xi) * _squash(self.raw_sigma)


class LearnableFilterbank(nn.Module):
    """The learnable wavelets of one JTFS, and the regenerated values its operators read.

    Args:
        jtfs: the transform (its bank and frequential layout are read, never changed).
        psi1, psi2, psi_fr: its initial filterbanks (``psi_fr[0]``, the
            spin-0 low-pass, and the low-passes phi stay fixed).
        trainable: the families the optimizer may move (all are regenerated).
    """

    def __init__(self, jtfs, psi1: List[Filter], psi2: List[Filter], psi_fr: List[Filter],
                 trainable: Sequence[str] = FAMILIES):
        super().__init__()
        unknown = set(trainable) - set(FAMILIES)
        if unknown:
            raise ValueError(f"learnable families must be among {FAMILIES}, got {sorted(unknown)}")
        self.n_positive = (len(psi_fr) - 1) // 2
        self.n_padded, self.n_fr_padded, self.n_in = jtfs.n_padded, jtfs.n_fr_padded, len(psi1)
        self.psi1 = MorletFamily(psi1, self.n_padded, trainable="psi1" in trainable)
        self.psi2 = MorletFamily(psi2, self.n_padded, trainable="psi2" in trainable)
        self.psi_fr = MorletFamily(psi_fr[1 : 1 + self.n_positive], self.n_fr_padded, analytic=True,
                                   trainable="psi_fr" in trainable)
        self.k_fr = list(jtfs.k_fr)
        full1, full2 = self._designs(psi1, self.n_padded), self._designs(psi2, self.n_padded)
        self.register_buffer("norm1", _l1_norms(full1), persistent=False)
        self.register_buffer("norm2", _l1_norms(full2), persistent=False)
        # Spin +1 then spin -1: a mirrored filter's discrete norm differs from its twin's in the last digits.
        self.register_buffer("norm_fr", _l1_norms(self._designs(psi_fr[1:], self.n_fr_padded)), persistent=False)
        #: bank entry -> (family, first filter, last filter + 1, level k)
        self.entries: Dict[str, tuple] = {}
        for g, (k1, start, end) in enumerate(jtfs.groups):
            self.entries[f"psi1_{g}"] = ("psi1", start, end, 0)
        for name in jtfs.bank._meta:
            if name.startswith("psi2_"):
                n2, k1 = (int(v) for v in name.split("_")[1:])
                self.entries[name] = ("psi2", n2, n2 + 1, k1)
        # Each entry's stored bins, evaluated as Gaussian terms (see .taps): one evaluation for all
        # first-order entries (every path needs them), one per second-order entry.
        psi1_taps, self.offsets, size = [], {}, 0
        psi2_terms = {}
        for name, (family_name, start, end, k) in self.entries.items():
            taps, n_kept = self._entry_taps(jtfs.bank, name, start, end, k, full1 if family_name == "psi1" else full2)
            if family_name == "psi1":
                self.offsets[name] = (size, end - start, n_kept)
                psi1_taps += [(f, bins, size + dst) for f, bins, dst in taps]
                size += (end - start) * n_kept
            else:
                psi2_terms[name] = self._terms(self.psi2, taps, (end - start) * n_kept)
        self.psi1_terms = self._terms(self.psi1, psi1_taps, size)
        self.psi2_terms = nn.ModuleDict(psi2_terms)
        # The transform's bank, not registered here (it belongs to the transform).
        object.__setattr__(self, "bank", jtfs.bank)
        jtfs.bank.source = self.bank_values
        object.__setattr__(self, "_operator_dtype", lambda: jtfs.dtype)
        self._sharing, self._memo = 0, {}

    @staticmethod
    def _entry_taps(bank, name: str, start: int, end: int, k: int, full: List[Tensor]):
        """Per filter of a bank entry: (its index, the full-grid bins evaluated, their flat positions in the entry)."""
        keep = getattr(bank, f"{name}_keep")
        # The filter at level k is the full filter summed over its 2^k blocks of n / 2^k bins; only
        # the bins where the initial filter exceeds TAP_TOL of its peak are evaluated again.
        bins = keep[:, None] + bank.length(name) * torch.arange(2**k)
        taps = []
        for row, i in enumerate(range(start, end)):
            values = full[i][bins].abs()
            kept, blocks = torch.nonzero(values > TAP_TOL * full[i].abs().max(), as_tuple=True)
            taps.append((i, bins[kept, blocks], row * keep.shape[0] + kept))
        return taps, keep.shape[0]

    @staticmethod
    def _terms(family: "MorletFamily", taps, size: int) -> TapTerms:
        # sigma <= soft-min(xi - S_lo, S_hi - xi) / alpha <= (S_hi - S_lo) / (2 alpha), whatever the parameters.
        sigma_max = (family.s_hi - family.s_lo) / (2 * family.alpha)
        return TapTerms(taps, family.n_grid, family.periods, family.lo, family.hi, sigma_max, size)

    @staticmethod
    def _designs(filters: Sequence[Filter], n: int) -> List[Tensor]:
        """Each initial filter on the n bins, before normalisation."""
        return [morlet_unnormalized(torch.arange(n), n, torch.tensor(float(f.xi), dtype=torch.float64),
                                    torch.tensor(f.sigma, dtype=torch.float64), periods(f.sigma)) for f in filters]

    def _family(self, name: str):
        family = getattr(self, name)
        return family, {"psi1": self.norm1, "psi2": self.norm2, "psi_fr": self.norm_fr}[name]

    @contextlib.contextmanager
    def shared(self):
        """Within this context, regenerated values are computed once and shared by every call.

        A loss wraps the estimate and the target of one step in it: both read
        the same filters, whose parameters cannot change in between. Outside
        it every call regenerates (parameters may have moved in place).
        """
        self._sharing += 1
        try:
            yield self
        finally:
            self._sharing -= 1
            if not self._sharing:
                self._memo = {}

    def _memoized(self, key, compute):
        if not self._sharing:
            return compute()
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _first_order(self) -> Dict[str, Tensor]:
        xi, sigma = self.psi1()
        flat = self.psi1_terms(xi, sigma, self.norm1, self._operator_dtype())
        packed = {}
        for name, (offset, n_filters, n_kept) in self.offsets.items():
            packed[name] = self.bank.pack(name, flat[offset : offset + n_filters * n_kept].view(n_filters, n_kept))
        return packed

    def _second_order(self, name: str) -> Tensor:
        xi, sigma = self.psi2()
        flat = self.psi2_terms[name](xi, sigma, self.norm2, self._operator_dtype())
        return self.bank.pack(name, flat.view(1, -1))

    def bank_values(self, name: str) -> Optional[Tensor]:
        """Regenerated (re, im) multipliers of a bank entry (None for the fixed low-passes)."""
        if name in self.offsets:
            return self._memoized("psi1", self._first_order)[name]
        if name in self.psi2_terms:
            return self._memoized(name, lambda: self._second_order(name))
        return None

    def frequential(self, n_fr: int) -> Optional[Tensor]:
        """Regenerated operator (n_out, n_in, 2) of frequential filter ``n_fr`` (None for the spin-0 low-pass)."""
        if n_fr == 0:
            return None
        return self._memoized(("psi_fr", n_fr), lambda: self._frequential(n_fr))

    def _frequential(self, n_fr: int) -> Tensor:
        i = (n_fr - 1) % self.n_positive
        spin = 1 if n_fr <= self.n_positive else -1
        xi, sigma = self.psi_fr()
        bins = torch.arange(self.n_fr_padded, device=xi.device)
        h = morlet_unnormalized(bins, self.n_fr_padded, spin * xi[i], sigma[i],
                                self.psi_fr.periods[i]) / self.norm_fr[n_fr - 1]
        w = frequential_operator(self.n_fr_padded, self.n_in, h, 2 ** self.k_fr[n_fr])
        return torch.view_as_real(w).to(self._operator_dtype())

    def normalisation_drift(self) -> Dict[str, Tensor]:
        """Per family, |frozen norm / exact L1 norm - 1| of each filter at the current parameters."""
        out = {}
        for name, n in (("psi1", self.n_padded), ("psi2", self.n_padded), ("psi_fr", self.n_fr_padded)):
            family, norms = self._family(name)
            norms = norms[: len(family.periods)]
            xi, sigma = family()
            exact = _l1_norms([morlet_unnormalized(torch.arange(n), n, xi[i], sigma[i], family.periods[i])
                               for i in range(len(norms))])
            out[name] = (norms / exact - 1).abs().detach()
        return out
