"""theta-importance sampling (theta-IS): path probabilities from per-parameter curvature (paper, section 3.4).

For synth parameter u and path p, ``C[u, p]`` measures how strongly path p's
loss reacts to theta_u; the path distribution is

    pi_p = (1/U) sum_u C[u, p] / sum_p' C[u, p']        (paper, eq. 10)

floored at ``min_prob_frac / n_paths``. :class:`WarmupMixin` gives
:class:`scrapl_graph.SCRAPLLoss` the bookkeeping of these values (kept as
logs, with the reference package's semantics for partially updated sets).
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Optional, Union

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class WarmupMixin:
    """Per-(theta, path) importance values and the probabilities derived from them.

    Expects the host to define ``n_paths``, ``n_theta``, ``eps``,
    ``min_prob_frac``, ``unif_prob``, ``loaded_probs_path`` and a ``probs``
    property with a validating setter.
    """

    def _init_theta_is(self) -> None:
        self.min_prob = self.unif_prob * self.min_prob_frac
        self.updated_path_indices = defaultdict(set)
        self.all_log_vals = torch.full((self.n_theta, self.n_paths), math.log(self.eps), dtype=torch.float64)
        self.all_log_probs = torch.full((self.n_theta, self.n_paths), math.log(self.unif_prob), dtype=torch.float64)

    def _clear_theta_is(self) -> None:
        self._init_theta_is()

    def _theta_is_state(self) -> dict:
        return {"updated_path_indices": {k: sorted(v) for k, v in self.updated_path_indices.items()},
                "all_log_vals": self.all_log_vals.clone(), "all_log_probs": self.all_log_probs.clone()}

    def _load_theta_is_state(self, state: Optional[dict]) -> None:
        if state is None:
            self._init_theta_is()
            return
        shape = (self.n_theta, self.n_paths)
        for key in ("all_log_vals", "all_log_probs"):
            if tuple(state[key].shape) != shape:
                raise ValueError(f"theta-IS state '{key}' has shape {tuple(state[key].shape)}, expected {shape}")
        self.updated_path_indices = defaultdict(set, {int(k): set(v) for k, v in state["updated_path_indices"].items()})
        self.all_log_vals = state["all_log_vals"].to(torch.float64).clone()
        self.all_log_probs = state["all_log_probs"].to(torch.float64).clone()

    @staticmethod
    def _normalized_log(log_vals: Tensor) -> Tensor:
        return log_vals - torch.logsumexp(log_vals, dim=0)

    def update_prob(self, path_idx: int, val: Union[float, Tensor], theta_idx: int = 0) -> None:
        """Record the importance ``val = C[theta_idx, path_idx]`` and update ``probs``.

        Until every path has a value for theta_idx, the paths that have one
        share a probability mass equal to their fraction of all paths (split in
        proportion to their values) and the others keep theirs.

        Raises:
            ValueError: if probabilities were loaded from a file, an index is out
                of range, or ``val`` is negative or not finite.
        """
        if self.loaded_probs_path is not None:
            raise ValueError(f"cannot update probabilities loaded from {self.loaded_probs_path!r}; call clear() first")
        if not 0 <= int(path_idx) < self.n_paths:
            raise ValueError(f"path_idx {path_idx} out of range [0, {self.n_paths})")
        if not 0 <= int(theta_idx) < self.n_theta:
            raise ValueError(f"theta_idx {theta_idx} out of range [0, {self.n_theta})")
        val = torch.as_tensor(val, dtype=torch.float64).detach().cpu()
        if val.numel() != 1 or not bool(torch.isfinite(val)) or val.item() < 0:
            raise ValueError(f"importance value must be a finite non-negative scalar, got {val}")
        path_idx, theta_idx = int(path_idx), int(theta_idx)
        self.updated_path_indices[theta_idx].add(path_idx)
        updated = sorted(self.updated_path_indices[theta_idx])
        self.all_log_vals[theta_idx, path_idx] = val.clamp(min=self.eps).log()
        if len(updated) < 2:
            return
        log_vals = self.all_log_vals[theta_idx]
        if len(updated) == self.n_paths:
            log_probs = self._normalized_log(log_vals)
        else:
            fraction = len(updated) / self.n_paths
            stale = self.all_log_probs[theta_idx].clone()
            stale[updated] = math.log(self.eps)
            stale = self._normalized_log(stale) + math.log(1.0 - fraction)
            fresh = self._normalized_log(torch.where(
                torch.isin(torch.arange(self.n_paths), torch.tensor(updated)), log_vals,
                torch.full_like(log_vals, -math.inf))) + math.log(fraction)
            stale[updated] = fresh[updated]
            log_probs = self._normalized_log(stale)
        self.all_log_probs[theta_idx] = log_probs + math.log(1.0 - self.min_prob_frac)
        self.probs = (self.all_log_probs.exp() + self.min_prob).mean(dim=0)
