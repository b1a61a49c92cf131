"""Sizes of a JTFS: averaging supports, padding, border indices and the path set.

Everything here is pure bookkeeping on integers and the filterbanks; the
transform itself lives in :mod:`scrapl_graph.jtfs.transform`.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .filters import SIGMA0, Filter, morlet_1d, temporal_support

Support = Union[None, int, str]


def parse_support(value: Support, J: int, n_input: int, name: str) -> Tuple[int, str]:
    """Resolve T (or F) to ``(support, mode)`` with mode 'local' or 'global'.

    None means a local average of support ``2^J``; 'global' sums over the
    whole (padded) axis; an integer ``1 <= value <= n_input`` is a local
    support.

    Raises:
        TypeError: if value is neither None, 'global' nor an integer.
        ValueError: if the integer is out of range.
    """
    if value is None:
        return 2**J, "local"
    if isinstance(value, str):
        if value == "global":
            return 2**J, "global"
        raise ValueError(f"{name} must be None, a positive integer or 'global', got {value!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be None, a positive integer or 'global', got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (no averaging is not supported), got {value}")
    if value > n_input:
        raise ValueError(f"{name}={value} exceeds the length {n_input} of the axis it averages; use {name}='global'")
    return int(value), "local"


def padding(N: int, T: int) -> Tuple[int, int, int]:
    """Padded length (a power of two) and the left/right reflect padding for a signal of length N.

    The signal is padded by at least three times the support of the low-pass
    on each side, without exceeding what reflect padding allows (N - 1).
    """
    phi = morlet_1d(N, None, SIGMA0 / T)
    min_to_pad = 3 * temporal_support(phi.reshape(1, -1), criterion=1e-3)
    log2_max = int(np.floor(np.log2(3 * N - 2)))
    log2_padded = min(int(np.ceil(np.log2(N + 2 * min_to_pad))), log2_max)
    n_padded = 2**log2_padded
    left = (n_padded - N) // 2
    right = n_padded - N - left
    return n_padded, left, right


def border_indices(max_log2: int, start: int, end: int) -> Tuple[Dict[int, int], Dict[int, int]]:
    """Where the unpadded signal ``[start, end)`` lies after subsampling by ``2^k``, for every k."""
    starts, ends = {0: start}, {0: end}
    for k in range(1, max_log2 + 1):
        starts[k] = starts[k - 1] // 2 + starts[k - 1] % 2
        ends[k] = ends[k - 1] // 2 + ends[k - 1] % 2
    return starts, ends


def frequential_padding(n_lambda1: int, F: int, J_fr: int) -> int:
    """Length of the zero-padded log-frequency axis: room for 8 supports, a multiple of 2^J_fr."""
    min_to_pad = 8 * min(F, 2**J_fr)
    return (n_lambda1 + min_to_pad) // 2**J_fr * 2**J_fr


@dataclass(frozen=True)
class PathInfo:
    """Metadata of one JTFS path, second order (the default) or first order.

    A second-order path (n2, n_fr) filters the scalogram U1 in time by the
    wavelet n2 and across log-frequency by the filter n_fr. A first-order
    path filters the time-averaged scalogram ``S1 = U1 *_t phi_T`` across
    log-frequency by the filter n_fr (spin >= 0 only): it has no temporal
    wavelet, so ``n2 = j2 = -1`` and its rate ``xi2`` is 0 (the time average).

    Attributes:
        idx: position in the path set (what SCRAPL samples).
        n2: index of the second-order temporal wavelet (-1 for a first-order path).
        n_fr: index of the frequential filter (0: low-pass, spin 0).
        j2: dyadic scale of the temporal wavelet (-1 for a first-order path).
        xi2: temporal modulation rate in cycles per sample (0 for a first-order path).
        j_fr: dyadic scale of the frequential filter.
        spin: +1 (upward chirps), -1 (downward) or 0 (low-pass).
        xi_fr: frequential center frequency in cycles per lambda1 bin.
        scale: frequential modulation scale in cycles per octave, ``|xi_fr| * Q1``.
        n_lambda1: number of first-order wavelets the path uses (those with j1 < j2; all for a first-order path).
        order: 2 for a second-order path, 1 for a first-order path.
    """

    idx: int
    n2: int
    n_fr: int
    j2: int
    xi2: float
    j_fr: int
    spin: int
    xi_fr: float
    scale: float
    n_lambda1: int
    order: int = 2

    @property
    def key(self) -> Tuple[int, int]:
        """``(n2, n_fr)``; ``(-1, n_fr)`` for a first-order path, so no key names two paths."""
        return (self.n2, self.n_fr)

    def rate_hz(self, sample_rate: float) -> float:
        """Temporal modulation rate in Hz for a given sample rate."""
        return self.xi2 * sample_rate


def check_path_index(idx, n_paths: int, name: str = "path index") -> int:
    """Validate a path index (an int or a one-element tensor) and return it as an int.

    Raises:
        TypeError: if it is not an integer.
        ValueError: if it is outside ``[0, n_paths)``.
    """
    if hasattr(idx, "numel") and idx.numel() == 1:
        idx = idx.item()
    if isinstance(idx, bool) or not isinstance(idx, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(idx).__name__} {idx!r}")
    if not 0 <= idx < n_paths:
        raise ValueError(f"{name} {idx} out of range: expected 0 <= {name} < n_paths={n_paths}")
    return int(idx)


def path_set(psi1: List[Filter], psi2: List[Filter], psi_fr: List[Filter], Q1: int) -> List[PathInfo]:
    """All second-order paths (n2, n_fr), in lexicographic order, for the n2 that see some j1 < j2."""
    paths: List[PathInfo] = []
    for n2, f2 in enumerate(psi2):
        n_lambda1 = sum(1 for f1 in psi1 if f1.j < f2.j)
        if n_lambda1 == 0:
            continue
        for n_fr, ffr in enumerate(psi_fr):
            paths.append(
                PathInfo(
                    idx=len(paths), n2=n2, n_fr=n_fr, j2=f2.j, xi2=f2.xi, j_fr=ffr.j,
                    spin=int(np.sign(ffr.xi)), xi_fr=ffr.xi, scale=abs(ffr.xi) * Q1,
                    n_lambda1=n_lambda1,
                )
            )
    return paths


def first_order_path_set(psi1: List[Filter], psi_fr: List[Filter], Q1: int, start: int) -> List[PathInfo]:
    """The first-order paths: one per frequential filter of spin >= 0 (low-pass, then spin +1), indexed from ``start``.

    Their order is the channel order of :meth:`scrapl_graph.JTFS.first_order`.
    """
    paths: List[PathInfo] = []
    for n_fr, ffr in enumerate(psi_fr):
        spin = int(np.sign(ffr.xi))
        if spin < 0:
            continue
        paths.append(PathInfo(idx=start + len(paths), n2=-1, n_fr=n_fr, j2=-1, xi2=0.0, j_fr=ffr.j, spin=spin,
                              xi_fr=ffr.xi, scale=abs(ffr.xi) * Q1, n_lambda1=len(psi1), order=1))
    return paths


def path_table(paths: Sequence[PathInfo], sample_rate: Optional[float] = None) -> List[dict]:
    """Per-path metadata as dicts (rate in cycles/sample, and in Hz when ``sample_rate`` is given)."""
    rows = []
    for p in paths:
        row = {"idx": p.idx, "n2": p.n2, "n_fr": p.n_fr, "j2": p.j2, "rate": p.xi2,
               "j_fr": p.j_fr, "spin": p.spin, "scale": p.scale}
        if sample_rate is not None:
            row["rate_hz"] = p.rate_hz(sample_rate)
        rows.append(row)
    return rows


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def contiguous_groups(k1: Sequence[int]) -> List[Tuple[int, int, int]]:
    """Runs ``(k, start, end)`` of first-order filters sharing a resolution (k1 is non-decreasing)."""
    groups = []
    start = 0
    for n1 in range(1, len(k1) + 1):
        if n1 == len(k1) or k1[n1] != k1[start]:
            groups.append((k1[start], start, n1))
            start = n1
    return groups


def check_sizes(shape, J, Q1, Q2, J_fr, Q_fr) -> Tuple[int, int, int, int, int, int]:
    """The JTFS sizes as ints ``(N, J, Q1, Q2, J_fr, Q_fr)``, checked (``2**J <= N``)."""
    if isinstance(shape, tuple):
        if len(shape) != 1:
            raise ValueError(f"shape must be an int or a 1-tuple, got {shape!r}")
        shape = shape[0]
    N = check_int("shape", shape, 2)
    sizes = tuple(check_int(name, v, 1) for name, v in (("J", J), ("Q1", Q1), ("Q2", Q2), ("J_fr", J_fr), ("Q_fr", Q_fr)))
    if 2 ** sizes[0] > N:
        raise ValueError(f"J={J} is too large for a signal of length {N}: need 2**J <= N, i.e. J <= {int(math.log2(N))}")
    return (N,) + sizes
