r"""theta-importance sampling: path probabilities from per-parameter importance values (paper, eq. 10).

For synth parameter u and path p, ``C[u, p] >= 0`` measures how strongly path
p's loss reacts to theta_u (see :mod:`scrapl_graph.scrapl.curvature`). The
path distribution is

    pi_p = (1/U) sum_u ( (1 - f) C[u, p] / sum_p' C[u, p'] + f / P )

with the floor fraction ``f = min_prob_frac``, so that every path keeps at
least ``f / P``. Values are kept as logs (they span many decades).

Theta weights ``w_u >= 0`` (sum > 0) replace the mean over u by a weighted
mean, ``sum_u w_u (...) / sum_u w_u``: a weight of 0 leaves theta_u out, so
the sampling can favour the paths that matter for a group of parameters.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from ..jtfs.layout import check_path_index

AGGREGATIONS = ("none", "mean", "max", "med")


def aggregate_vals(vals: Tensor, agg: str = "none") -> Tensor:
    """Reduce per-parameter-group importance values ``(G, U)`` to ``(U,)``.

    Args:
        vals: ``(G, U)``, one row per parameter group of the warmup.
        agg: ``"none"`` (exactly one group), ``"mean"``, ``"max"`` or ``"med"``
            (the lower median, as ``torch.median``) over the groups.

    Raises:
        ValueError: for an unknown ``agg``, a wrong shape, or several groups with ``"none"``.
    """
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
    if not torch.is_tensor(vals) or vals.ndim != 2:
        raise ValueError(f"vals must be a (groups, n_theta) tensor, got {getattr(vals, 'shape', vals)}")
    if agg == "none":
        if vals.shape[0] != 1:
            raise ValueError(f"agg='none' needs one parameter group, vals has {vals.shape[0]}")
        return vals[0]
    if agg == "mean":
        return vals.mean(dim=0)
    if agg == "max":
        return vals.max(dim=0).values
    return vals.median(dim=0).values


def check_theta_weights(theta_weights: Optional[Sequence[float]], n_theta: int) -> Optional[Tensor]:
    """The theta weights as a float64 tensor ``(n_theta,)``, or None (equal weights: the plain mean).

    Raises:
        ValueError: for another length, a negative or non-finite weight, or weights summing to 0.
    """
    if theta_weights is None:
        return None
    try:
        w = torch.as_tensor([float(v) for v in theta_weights], dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"theta_weights must be a sequence of {n_theta} numbers, got {theta_weights!r}") from err
    if w.shape != (n_theta,):
        raise ValueError(f"theta_weights must have one weight per theta coordinate (n_theta={n_theta}), "
                         f"got {w.numel()}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"theta_weights must be finite and non-negative, got {w.tolist()}")
    if not w.sum() > 0:
        raise ValueError("theta_weights must not all be 0")
    return w


def _normalized_log(log_vals: Tensor) -> Tensor:
    return log_vals - torch.logsumexp(log_vals, dim=0)


class ImportanceTable:
    """The values ``C[u, p]`` recorded so far and the path probabilities they give.

    Until every path has a value for theta_u, the paths that have one share a
    probability mass equal to their fraction of all paths (split in
    proportion to their values) and the others keep theirs: the reference
    package's semantics for a partially updated set. Every row carries the
    mass left by the floor, ``1 - min_prob_frac``, at all times, so the
    probabilities always sum to 1.

    Args:
        n_theta: U, the number of synth parameters.
        n_paths: P, the number of paths.
        min_prob_frac: the floor ``f`` in [0, 1).
        eps: values are clamped to at least ``eps`` before the log.
        theta_weights: ``w_u`` of the weighted mean over theta (None: the plain mean).

    Raises:
        ValueError: for a floor outside [0, 1) or bad theta weights (see :func:`check_theta_weights`).
    """

    def __init__(self, n_theta: int, n_paths: int, min_prob_frac: float = 0.0, eps: float = 1e-12,
                 theta_weights: Optional[Sequence[float]] = None):
        if not 0.0 <= min_prob_frac < 1.0:
            raise ValueError(f"min_prob_frac must be in [0, 1), got {min_prob_frac}")
        self.n_theta, self.n_paths = int(n_theta), int(n_paths)
        self.min_prob_frac, self.eps = float(min_prob_frac), float(eps)
        self.min_prob = self.min_prob_frac / self.n_paths
        self.theta_weights = check_theta_weights(theta_weights, self.n_theta)
        self.clear()

    def clear(self) -> None:
        self.updated_path_indices = defaultdict(set)
        self.all_log_vals = torch.full((self.n_theta, self.n_paths), math.log(self.eps), dtype=torch.float64)
        self.all_log_probs = torch.full((self.n_theta, self.n_paths),
                                        -math.log(self.n_paths) + math.log1p(-self.min_prob_frac),
                                        dtype=torch.float64)

    def _mean_over_theta(self, rows: Tensor) -> Tensor:
        if self.theta_weights is None:
            return rows.mean(dim=0)
        return (self.theta_weights[:, None] * rows).sum(dim=0) / self.theta_weights.sum()

    def probs(self) -> Tensor:
        """``pi``, ``(n_paths,)`` float64: the (weighted) mean over theta of the rows, plus the floor."""
        return self._mean_over_theta(self.all_log_probs.exp() + self.min_prob)

    def mixture(self) -> Tensor:
        """``q``, ``(n_paths,)`` float64: the (weighted) mean over theta of the rows as distributions, no floor.

        ``probs() = (1 - f) q + f / P``; a caller that places the floor itself
        (:func:`~scrapl_graph.scrapl.order_share.impose_share`) starts from ``q``.
        """
        return self._mean_over_theta((self.all_log_probs - math.log1p(-self.min_prob_frac)).exp())

    def update(self, path_idx: int, val: Union[float, Tensor], theta_idx: int = 0) -> Tensor:
        """Record ``C[theta_idx, path_idx] = val``; return the new probabilities.

        Raises:
            ValueError: for an index out of range or a negative or non-finite value.
        """
        path_idx = check_path_index(path_idx, self.n_paths, "path_idx")
        if not 0 <= int(theta_idx) < self.n_theta:
            raise ValueError(f"theta_idx {theta_idx} out of range [0, {self.n_theta})")
        val = torch.as_tensor(val, dtype=torch.float64).detach().cpu()
        if val.numel() != 1 or not bool(torch.isfinite(val)) or val.item() < 0:
            raise ValueError(f"importance value must be a finite non-negative scalar, got {val}")
        theta_idx = int(theta_idx)
        self.updated_path_indices[theta_idx].add(int(path_idx))
        self.all_log_vals[theta_idx, path_idx] = val.clamp(min=self.eps).log()
        updated = sorted(self.updated_path_indices[theta_idx])
        if len(updated) >= 2:
            self.all_log_probs[theta_idx] = self._row(theta_idx, updated) + math.log1p(-self.min_prob_frac)
        return self.probs()

    def _row(self, theta_idx: int, updated: list) -> Tensor:
        log_vals = self.all_log_vals[theta_idx]
        if len(updated) == self.n_paths:
            return _normalized_log(log_vals)
        fraction = len(updated) / self.n_paths
        stale = self.all_log_probs[theta_idx].clone()
        stale[updated] = math.log(self.eps)
        stale = _normalized_log(stale) + math.log(1.0 - fraction)
        is_updated = torch.zeros(self.n_paths, dtype=torch.bool)
        is_updated[updated] = True
        fresh = _normalized_log(torch.where(is_updated, log_vals, torch.full_like(log_vals, -math.inf)))
        stale[updated] = fresh[updated] + math.log(fraction)
        return _normalized_log(stale)

    def state_dict(self) -> dict:
        return {"updated_path_indices": {k: sorted(v) for k, v in self.updated_path_indices.items()},
                "all_log_vals": self.all_log_vals.clone(), "all_log_probs": self.all_log_probs.clone()}

    def load_state_dict(self, state: Optional[dict]) -> None:
        """Restore :meth:`state_dict` (None clears).

        Raises:
            ValueError: for tables of another shape.
        """
        if state is None:
            self.clear()
            return
        shape = (self.n_theta, self.n_paths)
        for key in ("all_log_vals", "all_log_probs"):
            if tuple(state[key].shape) != shape:
                raise ValueError(f"theta-IS state '{key}' has shape {tuple(state[key].shape)}, expected {shape}")
        self.updated_path_indices = defaultdict(set, {int(k): set(v) for k, v in state["updated_path_indices"].items()})
        self.all_log_vals = state["all_log_vals"].to(torch.float64).clone()
        self.all_log_probs = state["all_log_probs"].to(torch.float64).clone()
