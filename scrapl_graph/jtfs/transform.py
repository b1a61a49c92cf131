"""Joint time-frequency scattering (JTFS), full tree or one path at a time.

For a signal x, with first-order wavelets psi_lambda1 (Q1 per octave),
second-order wavelets psi_lambda2 (Q2 per octave), frequential filters
psi_fr (spin +1, -1, or the low-pass of support 2^J_fr) and low-passes phi_T
and phi_F, the second-order path (n2, n_fr) is

    S x (n2, n_fr)(lambda1, t) = | (U1 x *_t psi_n2) *_lambda1 psi_n_fr | *_t phi_T *_lambda1 phi_F,
    U1 x (lambda1, t) = | x * psi_lambda1 |(t),

where ``*_lambda1`` convolves across the log-frequency axis (zero-padded)
and phi_F is applied only to spinned paths (the spin-0 filter already
averages). The first-order scalogram U1 is computed once per call and only
for the lambda1 a request needs (those with j1 < j2); every filter of a
scale is applied in one batched product.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

from .filters import frequential_filterbank, temporal_filterbanks
from .layout import (PathInfo, border_indices, check_path_index, check_sizes, contiguous_groups, first_order_path_set,
                     frequential_padding, padding, parse_support, path_set, path_table)
from ..checks import check_signal
from .averaging import averaging_matrices
from .bandlimited import BandLimitedBank
from .streamed import streamed_modulus_average
from .frequential import frequency_averages, frequential_operators
from . import planned_fft
from .ops import modulus, real_inverse, rfft
from .parametric import FAMILIES, LearnableFilterbank

log = logging.getLogger(__name__)

# Upper bound on complex elements of one frequential-scattering batch in the
# full tree; larger requests are split over n_fr to bound peak memory.
_CHUNK_ELEMENTS = 2**24


class JTFS(nn.Module):
    """Joint time-frequency scattering transform with kymatio's conventions.

    Args:
        shape: signal length N (int or 1-tuple).
        J: octaves of the temporal wavelets (both orders); ``2**J <= N``.
        Q1: first-order wavelets per octave.
        Q2: second-order wavelets per octave.
        J_fr: octaves of the frequential wavelets.
        Q_fr: frequential wavelets per octave.
        T: temporal averaging: None (support ``2**J``), an int support, or
            'global' (sum over time).
        F: frequential averaging: None (support ``2**J_fr``), an int support
            ``<= 2**(J_fr + 1) - 1``, or 'global' (sum over log-frequency).
        dtype: floating dtype of the filters and of the computation (default
            ``torch.get_default_dtype()``); the filters are designed in float64
            and rounded once to it.
        check_values: the NaN/Inf check of the input (see
            :mod:`scrapl_graph.checks`): None checks CPU input only, True
            always, False never.
        learnable: wavelet families whose centre frequencies and bandwidths
            are parameters (``"psi1"``, ``"psi2"``, ``"psi_fr"``; True for
            all), regenerated at each call (see :mod:`.parametric`); the
            others stay fixed but are regenerated too when any is learnable.

    Attributes:
        paths: list of :class:`PathInfo`, one per second-order path, in the
            reference package's order (lexicographic in ``(n2, n_fr)``).
        n_paths: number of second-order paths.
        first_order_paths: :class:`PathInfo` of the ``n_first_order`` first-order paths (``order=1``),
            indexed from ``n_paths`` on.
        keys: ``[(n2, n_fr), ...]`` in path order.
        out_shape: ``(F', T')`` of one path.

    Raises:
        TypeError, ValueError: on invalid sizes (see messages).
    """

    def __init__(self, shape, J: int, Q1: int, Q2: int, J_fr: int, Q_fr: int, T=None, F=None,
                 dtype: Optional[torch.dtype] = None, check_values: Optional[bool] = None, learnable=()):
        super().__init__()
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point and not dtype.is_complex):
            raise TypeError(f"dtype must be a real floating-point torch.dtype, got {dtype!r}")
        self.check_values = check_values
        self.N, self.J, self.Q1, self.Q2, self.J_fr, self.Q_fr = check_sizes(shape, J, Q1, Q2, J_fr, Q_fr)
        self.T, self.F = T, F
        phi, psi1, psi2, phi_F, psi_fr = self._design_filterbanks(T, F)
        self._set_paths(psi1, psi2, psi_fr)
        # Temporal filters are applied on their frequency support only; the
        # frequential ones act on a short axis and stay dense.
        self.bank = BandLimitedBank()
        self._register_temporal(phi, psi1, psi2, dtype)
        self._register_frequential(len(psi1), psi_fr, phi_F, dtype)
        self.filterbank = LearnableFilterbank(self, psi1, psi2, psi_fr, FAMILIES if learnable is True else learnable
                                              ) if learnable else None
        self.out_shape = self._out_shape()
        log.debug("JTFS N=%d padded=%d n_fr_padded=%d paths=%d", self.N, self.n_padded, self.n_fr_padded, self.n_paths)

    def _design_filterbanks(self, T, F):
        """Averaging supports, padding, and the temporal and frequential filterbanks (numpy, float64)."""
        T_support, self.average = parse_support(T, self.J, self.N, "T")
        self.log2_T = int(math.floor(math.log2(T_support)))
        self.n_padded, self.pad_left, self.pad_right = padding(self.N, T_support)
        if max(self.pad_left, self.pad_right) >= self.N:
            raise ValueError(f"signal of length {self.N} is too short for T={T_support}: reflect padding would exceed it")
        phi, (psi1, psi2) = temporal_filterbanks(self.n_padded, self.J, (self.Q1, self.Q2), T_support)
        n_input_fr = (self.J + 1) * self.Q1
        F_support, self.average_fr = parse_support(F, self.J_fr, n_input_fr, "F")
        self.log2_F = int(math.floor(math.log2(F_support)))
        if self.average_fr == "local" and self.log2_F > self.J_fr:
            raise ValueError(f"F={F} averages beyond the spin-0 filter: need F < 2**(J_fr + 1) = {2 ** (self.J_fr + 1)}")
        self.n_fr_padded = max(frequential_padding(n_input_fr, F_support, self.J_fr), 2**self.J_fr * math.ceil(len(psi1) / 2**self.J_fr))
        phi_F, psi_fr = frequential_filterbank(self.n_fr_padded, self.J_fr, self.Q_fr, F_support)
        return phi, psi1, psi2, phi_F, psi_fr

    def _set_paths(self, psi1, psi2, psi_fr) -> None:
        """The path set, in the reference's order, and each filter's subsampling."""
        self.paths: List[PathInfo] = path_set(psi1, psi2, psi_fr, self.Q1)
        if not self.paths:
            raise ValueError(f"no second-order path for J={self.J}, Q1={self.Q1}, Q2={self.Q2}: increase J")
        self.n_paths = len(self.paths)
        self.first_order_paths = first_order_path_set(psi1, psi_fr, self.Q1, start=self.n_paths)
        self.n_first_order = len(self.first_order_paths)
        self.keys = [p.key for p in self.paths]
        if self.average == "local":
            max_j2 = max(p.j2 for p in self.paths)
            if max_j2 > self.log2_T:
                raise ValueError(f"T={self.T} is shorter than the largest second-order wavelet: need T >= 2**{max_j2} = {2 ** max_j2}")
        self.j1, self.j2, self.j_fr = ([f.j for f in bank] for bank in (psi1, psi2, psi_fr))
        self.spin = [int(np.sign(f.xi)) for f in psi_fr]
        # The first-order resolution: local averaging never needs finer than 2^log2_T.
        self.k1 = [min(j, self.log2_T) if self.average == "local" else j for j in self.j1]
        self.groups = contiguous_groups(self.k1)
        self.k_fr = [min(j, self.log2_F) if self.average_fr == "local" else j for j in self.j_fr]
        self.ind_start, self.ind_end = border_indices(max(self.log2_T, self.J), self.pad_left, self.pad_left + self.N)

    def _register_temporal(self, phi, psi1, psi2, dtype: torch.dtype) -> None:
        for g, (k1, start, end) in enumerate(self.groups):
            self.bank.add(f"psi1_{g}", np.stack([f.levels[0] for f in psi1[start:end]]), 2**k1, dtype)
            self.bank.add(f"phi_{k1}", phi.levels[k1], 2 ** (self.log2_T - k1), dtype)
        for n2 in sorted({p.n2 for p in self.paths}):
            j2 = self.j2[n2]
            for k1 in sorted({k for k, j in zip(self.k1, self.j1) if j < j2}):
                self.bank.add(f"psi2_{n2}_{k1}", psi2[n2].levels[k1], 2 ** self._k2(j2, k1), dtype)
            if self.average == "local" and f"phi_{j2}" not in self.bank:
                self.bank.add(f"phi_{j2}", phi.levels[j2], 2 ** (self.log2_T - j2), dtype)
        if self.average == "local":
            matrices = averaging_matrices(phi.levels, sorted({self.j2[p.n2] for p in self.paths}), self.log2_T,
                                          self.ind_start[self.log2_T], self.ind_end[self.log2_T])
            for j2, a in matrices.items():
                self.register_buffer(f"phi_matrix_{j2}", torch.as_tensor(a, dtype=dtype), persistent=False)

    def _register_frequential(self, n_in: int, psi_fr, phi_F, dtype: torch.dtype) -> None:
        """Each frequential operator (zero-pad, filter, subsample) as one matrix (see :mod:`.frequential`)."""
        buffers, self._fr_support = frequential_operators(self.n_fr_padded, n_in, psi_fr, self.k_fr,
                                                          [p.n_lambda1 for p in self.paths], dtype)
        if self.average_fr == "local":
            buffers.update(frequency_averages(self.n_fr_padded, phi_F, self.k_fr, self.log2_F))
        for name, array in buffers.items():
            self.register_buffer(name, torch.as_tensor(array, dtype=dtype), persistent=False)
        self._row_cache: Dict[tuple, Tensor] = {}

    def _k2(self, j2: int, k1: int) -> int:
        """Second-order subsampling after first-order resolution k1: to j2, capped by the averaging."""
        return min(j2 - k1, self.log2_T) if self.average == "local" else j2 - k1

    def _out_shape(self) -> Tuple[int, int]:
        n_time = 1 if self.average == "global" else self.ind_end[self.log2_T] - self.ind_start[self.log2_T]
        n_freq = 1 if self.average_fr == "global" else self.n_fr_padded // 2**self.log2_F
        return (n_freq, n_time)

    def extra_repr(self) -> str:
        return (f"shape={self.N}, J={self.J}, Q1={self.Q1}, Q2={self.Q2}, J_fr={self.J_fr}, "
                f"Q_fr={self.Q_fr}, T={self.T!r}, F={self.F!r}, n_paths={self.n_paths}")

    # ------------------------------------------------------------------ input
    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the filters (and of the input this transform accepts)."""
        return self.psi_fr_0.dtype

    @property
    def device(self) -> torch.device:
        return self.psi_fr_0.device

    def shared_filters(self):
        """Context in which learnable filters are regenerated once and shared by every call (a no-op when fixed)."""
        return self.filterbank.shared() if self.filterbank is not None else contextlib.nullcontext()

    def _prepare(self, x: Tensor) -> Tuple[Tensor, Tuple[int, ...]]:
        x = check_signal(x, self.N, self.dtype, self.device, self.check_values)
        batch_shape = tuple(x.shape[:-1])
        x = x.reshape(-1, 1, self.N)
        x = Fn.pad(x, (self.pad_left, self.pad_right), mode="reflect")[:, 0]
        return x, batch_shape

    # ------------------------------------------------------------ first order
    def _scalogram_spectra(self, x_padded: Tensor, n_lambda1: int,
                           bins: Optional[Sequence[int]] = None) -> List[Tuple[int, int, Tensor]]:
        """rfft(U1) for the first ``n_lambda1`` wavelets, as ``(k1, start, rfft(U1))`` per resolution group."""
        x_hat = rfft(x_padded)[:, None, :]
        out = []
        for g, (k1, start, end) in enumerate(self.groups):
            end = min(end, n_lambda1)
            if start >= end:
                break
            cut = None if bins is None else bins[g]
            out.append((k1, start, self.bank.modulus_spectrum(x_hat, f"psi1_{g}", slice(0, end - start), cut)))
        return out

    def second_order_bins(self, idxs: Sequence[int]) -> List[int]:
        """Per resolution group, how many bins of rfft(U1) the second order of paths ``idxs`` reads.

        The second-order wavelets are low-pass at the first order's resolution (j2 = 6 reads 1 in 72
        bins of the highest octave): pass this as ``bins`` to :meth:`scalogram_spectra`.
        """
        n2s = {self.paths[self.check_idx(i)].n2 for i in idxs}
        names = [[f"psi2_{n2}_{k1}" for n2 in n2s] for k1, _, _ in self.groups]
        return [max((self.bank.reach(name) for name in group if name in self.bank), default=1) for group in names]

    # ----------------------------------------------------------- second order
    def time_scattering(self, u1_hats: List[Tuple[int, int, Tensor]], n2: int) -> Tensor:
        """Y2 for wavelet n2 from :meth:`scalogram_spectra`: complex (batch, lambda1 with j1 < j2, time at j2)."""
        j2 = self.j2[n2]
        n_lambda1 = sum(1 for j in self.j1 if j < j2)
        spectra = []
        for k1, start, u1_hat in u1_hats:
            if start >= n_lambda1:
                break
            spectra.append(self.bank.apply(u1_hat[:, : n_lambda1 - start], f"psi2_{n2}_{k1}"))
        # Every resolution group lands at the path's resolution: one inverse FFT for all of them.
        return planned_fft.ifft(spectra[0] if len(spectra) == 1 else torch.cat(spectra, dim=1))

    def _frequential_filters(self, n_frs: Sequence[int], n_lambda1: int) -> Tuple[Tensor, Tensor]:
        """``(W, rows)``: the stacked operators (R, n_lambda1) of frequential filters sharing k_fr, on their
        nonzero rows only, and the positions of those R rows among the ``len(n_frs) * F''`` stacked rows."""
        device = self.psi_fr_0.device
        key = (tuple(n_frs), n_lambda1, device)
        if key not in self._row_cache:
            n_freq = self.n_fr_padded // 2 ** self.k_fr[n_frs[0]]
            rows = np.concatenate([j * n_freq + self._fr_support[(n, n_lambda1)] for j, n in enumerate(n_frs)])
            self._row_cache[key] = torch.as_tensor(rows, dtype=torch.long, device=device)
        rows = self._row_cache[key]
        regenerated = [self.filterbank.frequential(n) if self.filterbank is not None else None for n in n_frs]
        w = torch.cat([(getattr(self, f"psi_fr_{n}") if r is None else r)[:, :n_lambda1]
                       for n, r in zip(n_frs, regenerated)], dim=0)
        return torch.view_as_complex(w.index_select(0, rows).contiguous()), rows

    def _frequential_moduli(self, y: Tensor, n_frs: Sequence[int], resolution: Optional[int]) -> Tensor:
        """|frequential filters applied to y|, averaged in time: (batch, len(n_frs), F'', T').

        Args:
            y: complex (batch, n_lambda1, time) at temporal resolution ``resolution``
                (None: already averaged in time).
            n_frs: frequential filters sharing one k_fr.
        """
        batch, n_lambda1, _ = y.shape
        w, rows = self._frequential_filters(n_frs, n_lambda1)
        matrix = getattr(self, f"phi_matrix_{resolution}", None)  # set where few frames are kept (see .streamed)
        z = (streamed_modulus_average(y, w, matrix) if matrix is not None
             else self._time_average(modulus(torch.matmul(w, y)), resolution))
        n_freq = self.n_fr_padded // 2 ** self.k_fr[n_frs[0]]
        full = z.new_zeros(batch, len(n_frs) * n_freq, z.shape[-1]).index_copy(1, rows, z)
        return full.view(batch, len(n_frs), n_freq, z.shape[-1])

    def _frequency_scattering(self, y2: Tensor, n_frs: Sequence[int], j2: int) -> Tensor:
        """Paths (n2, n_fr) for ``n_fr`` in ``n_frs`` from Y2 of one n2: (batch, len(n_frs), F', T')."""
        outputs: Dict[int, Tensor] = {}
        by_k: Dict[int, List[int]] = {}
        for n_fr in n_frs:
            by_k.setdefault(self.k_fr[n_fr], []).append(n_fr)
        batch, n_lambda1, n_time = y2.shape
        for k_fr, members in by_k.items():
            n_freq = self.n_fr_padded // 2**k_fr
            chunk = max(1, _CHUNK_ELEMENTS // (batch * n_freq * n_time))
            for i in range(0, len(members), chunk):
                idx = members[i : i + chunk]
                z = self._frequential_moduli(y2, idx, j2)
                s = self._frequency_average(z, [self.spin[n] for n in idx], k_fr)
                for n, coef in zip(idx, s.unbind(1)):
                    outputs[n] = coef
        return torch.stack([outputs[n] for n in n_frs], dim=1)

    def _time_average(self, z: Tensor, resolution: Optional[int]) -> Tensor:
        """Average moduli over time (from resolution 2^resolution; None: already averaged) and unpad."""
        if self.average == "global":
            return z.sum(dim=-1, keepdim=True)
        if resolution is not None:
            z = real_inverse(self.bank.apply(rfft(z), f"phi_{resolution}"))
        return z[..., self.ind_start[self.log2_T] : self.ind_end[self.log2_T]]

    def _frequency_average(self, z: Tensor, spins: List[int], k_fr: int) -> Tensor:
        """Average spinned paths across log-frequency; z is (batch, m, freq, time) with a common k_fr."""
        if self.average_fr == "global":
            return z.sum(dim=-2, keepdim=True)
        if all(s == 0 for s in spins):
            return z
        # k_fr = min(j_fr, log2_F) is the current frequential resolution: one phi_F level.
        averaged = torch.matmul(getattr(self, f"phi_fr_{k_fr}"), z)
        if all(s != 0 for s in spins):
            return averaged
        keep = torch.tensor([s == 0 for s in spins], device=z.device).view(1, -1, 1, 1)
        return torch.where(keep, z, averaged)

    # ---------------------------------------------------------------- public
    def scalogram_spectra(self, x: Tensor, n_lambda1: Optional[int] = None, bins: Optional[Sequence[int]] = None
                          ) -> Tuple[List[Tuple[int, int, Tensor]], Tuple[int, ...]]:
        """First-order scalogram U1 of x, as half spectra ready for the second order.

        Args:
            x: real signal (..., N).
            n_lambda1: compute only the first n_lambda1 wavelets (default: all).
            bins: per resolution group, the first bins to keep, as :meth:`second_order_bins` gives
                them for the paths to compute (default: all, which every path and the first order read).

        Returns:
            ``([(k1, start, rfft(U1)), ...], batch_shape)``, one entry per
            first-order resolution 2^k1; pass it to :meth:`paths_from_spectra`.
        """
        x_padded, batch_shape = self._prepare(x)
        n_lambda1 = len(self.j1) if n_lambda1 is None else n_lambda1
        if bins is not None and len(bins) != len(self.groups):
            raise ValueError(f"bins must give one count per resolution group ({len(self.groups)}), got {len(bins)}")
        return self._scalogram_spectra(x_padded, n_lambda1, bins), batch_shape

    def paths_from_spectra(self, spectra: List[Tuple[int, int, Tensor]], idxs: Sequence[int]) -> Tensor:
        """Second-order paths ``idxs`` from :meth:`scalogram_spectra`: (batch, len(idxs), F', T')."""
        by_n2: Dict[int, List[int]] = {}
        for i in idxs:
            by_n2.setdefault(self.paths[i].n2, []).append(i)
        coefs: Dict[int, Tensor] = {}
        for n2, members in by_n2.items():
            y2 = self.time_scattering(spectra, n2)
            coefs.update(zip(members, self.paths_from_time_scattering(y2, members).unbind(1)))
        return torch.stack([coefs[i] for i in idxs], dim=1)

    def paths_from_time_scattering(self, y2: Tensor, idxs: Sequence[int]) -> Tensor:
        """Paths ``idxs``, all of one n2, from its :meth:`time_scattering`: (batch, len(idxs), F', T')."""
        n2 = self.paths[idxs[0]].n2
        if any(self.paths[i].n2 != n2 for i in idxs):
            raise ValueError(f"paths {list(idxs)} do not share one second-order wavelet n2")
        return self._frequency_scattering(y2, [self.paths[i].n_fr for i in idxs], self.j2[n2])

    def paths_coefficients(self, x: Tensor, idxs: Sequence[int]) -> Tensor:
        """Several second-order paths sharing one first-order scalogram (its lambda1 with j1 < j2 and bins they read).

        Args:
            x: real signal of shape (..., N).
            idxs: path indices in ``[0, n_paths)``.

        Returns:
            Tensor of shape (..., len(idxs), F', T').

        Raises:
            TypeError, ValueError: on a bad signal or path index.
        """
        idxs = [self.check_idx(i) for i in idxs]
        if not idxs:
            raise ValueError("idxs must name at least one path")
        spectra, batch_shape = self.scalogram_spectra(x, max(self.paths[i].n_lambda1 for i in idxs),
                                                      self.second_order_bins(idxs))
        out = self.paths_from_spectra(spectra, idxs)
        return out.reshape(batch_shape + out.shape[1:])

    def path(self, x: Tensor, idx: int) -> Tensor:
        """One second-order path, equal to ``forward(x)[..., idx, :, :]``: shape (..., F', T')."""
        return self.paths_coefficients(x, [idx])[..., 0, :, :]

    def forward(self, x: Tensor) -> Tensor:
        """All second-order paths: shape (..., n_paths, F', T')."""
        return self.paths_coefficients(x, range(self.n_paths))

    def first_order(self, x: Tensor) -> Tensor:
        """First-order JTFS paths: the time-averaged scalogram S1 filtered across log-frequency.

        Returns:
            Tensor (..., n_first, F', T') for the frequential filters of spin
            >= 0 (the low-pass, then the spin +1 wavelets), as in the
            reference's joint output; channel c is ``first_order_paths[c]``.
        """
        spectra, batch_shape = self.scalogram_spectra(x)
        out = self.first_order_from_spectra(spectra, range(self.n_first_order))
        return out.reshape(batch_shape + out.shape[1:])

    def first_order_from_spectra(self, spectra: List[Tuple[int, int, Tensor]], channels: Sequence[int]) -> Tensor:
        """First-order paths ``channels`` (of :meth:`first_order`) from the full :meth:`scalogram_spectra`.

        Returns (batch, len(channels), F', T'); raises ValueError if ``spectra`` lacks some first-order
        wavelets (S1 needs all of them) or was cut to fewer bins than the average reads.
        """
        s1 = torch.cat([real_inverse(self.bank.apply(u1_hat, f"phi_{k1}")) for k1, _, u1_hat in spectra], dim=1)
        if s1.shape[1] != len(self.j1):
            raise ValueError(f"the first order needs all {len(self.j1)} first-order wavelets, got {s1.shape[1]}")
        s1 = torch.complex(s1, torch.zeros((), dtype=s1.dtype, device=s1.device))
        out: Dict[int, Tensor] = {}
        for c in channels:
            if c not in out:
                n_fr = self.first_order_paths[c].n_fr
                # S1 is already averaged in time: resolution None.
                z = self._frequential_moduli(s1, [n_fr], None)
                out[c] = self._frequency_average(z, [self.spin[n_fr]], self.k_fr[n_fr])
        return torch.cat([out[c] for c in channels], dim=1)

    def check_idx(self, idx) -> int:
        """Validate a path index (int or 1-element tensor) and return it as an int."""
        return check_path_index(idx, self.n_paths)

    def path_table(self, sample_rate: Optional[float] = None) -> List[dict]:
        """Per-path metadata of the second-order paths as dicts (see :func:`~scrapl_graph.jtfs.layout.path_table`)."""
        return path_table(self.paths, sample_rate)
