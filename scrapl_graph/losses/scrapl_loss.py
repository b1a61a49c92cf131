"""SCRAPLLoss: the JTFS distance of one randomly drawn path per step, with P-Adam and P-SAGA."""
from __future__ import annotations

import copy
import functools
import logging
import numbers
import weakref
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..jtfs import JTFS
from ..jtfs.layout import check_path_index
from ..pathwise import PathwiseState
from ..sampling import PathSampler, check_probs, load_probs_file, synchronize_path
from ..warmup import WarmupMixin
from .distance import check_pair, path_distance

log = logging.getLogger(__name__)


class SCRAPLLoss(WarmupMixin, nn.Module):
    """Scattering Transform with Random Paths for Machine Learning (SCRAPL) for the JTFS.

    Each call draws a path p of the JTFS (by default uniformly) and returns
    ``mean_b || rho(S_p x_target_b) - rho(S_p x_b) ||_p``. Under uniform
    sampling its expectation and the expectation of its gradient are the
    full-tree :class:`JTFSLoss` and its gradient (paper, Prop. 3.1).

    With parameters attached (:meth:`attach_params`), gradients are
    transformed during ``backward`` by P-Adam and P-SAGA exactly as in the
    paper's Algorithm 1 (see :mod:`scrapl_graph.pathwise`); use plain SGD
    (no momentum, optional weight decay) as the optimizer then. This departs
    from the reference package ``scrapl-loss`` 0.1.0, which divides the
    P-SAGA average by one path fewer when the path was seen before, uses k + 1
    in the bias correction, and adds epsilon outside the square root.

    The constructor arguments and defaults are the reference package's; the
    extras are ``paths_per_step`` and ``cache_target``, and ``shape`` may be
    None (taken from each input; a JTFS is built and cached per length,
    device and dtype).

    Args:
        shape: signal length, or None for any length.
        J, Q1, Q2, J_fr, Q_fr, T, F: the JTFS (see :class:`scrapl_graph.JTFS`).
        p: order of the per-path norm.
        use_rho_log1p: compare ``log1p(S / log1p_eps)`` instead of S.
        log1p_eps: epsilon of the log compression.
        grad_mult: factor applied to attached parameters' gradients before
            P-Adam (guards against float precision loss when squaring tiny
            JTFS gradients); must be > 1 with P-Adam and no log1p.
        use_p_adam, use_p_saga: the per-path gradient stabilisers.
        sample_all_paths_first: visit every path once before sampling from probs.
        n_theta: number of synth parameters (theta-importance sampling).
        min_prob_frac: floor of every path probability, as a fraction of 1/n_paths.
        probs_path: a ``.pt`` file of path probabilities (ours or the reference's).
        eps: numerical floor for probability computations.
        p_adam_b1, p_adam_b2, p_adam_eps: P-Adam hyperparameters.
        paths_per_step: draw this many paths (i.i.d.) per call and average their
            distances; they share one first-order scalogram. Requires P-Adam and
            P-SAGA off (their state is per path).
        cache_target: reuse a target's path coefficients while the same target
            tensor (same object, unmodified) is passed again, e.g. when
            optimizing parameters towards one recording.

    Attributes:
        n_paths, unif_prob, probs, curr_path_idx, path_counts: as in the reference.
        curr_path_idxs: all paths of the last call (``paths_per_step`` of them).
        step_count: the iteration counter k of Algorithm 1 (training calls so far).
    """

    def __init__(self, shape: Optional[int] = None, J: int = 12, Q1: int = 8, Q2: int = 2, J_fr: int = 3,
                 Q_fr: int = 2, T: Optional[Union[str, int]] = None, F: Optional[Union[str, int]] = None,
                 p: float = 2, use_rho_log1p: bool = False, log1p_eps: float = 1e-3, grad_mult: float = 1e8,
                 use_p_adam: bool = True, use_p_saga: bool = True, sample_all_paths_first: bool = False,
                 n_theta: int = 1, min_prob_frac: float = 0.0, probs_path: Optional[str] = None,
                 eps: float = 1e-12, p_adam_b1: float = 0.9, p_adam_b2: float = 0.999, p_adam_eps: float = 1e-8,
                 paths_per_step: int = 1, cache_target: bool = True):
        super().__init__()
        if use_p_adam and not use_rho_log1p and not grad_mult > 1.0:
            raise ValueError(f"use_p_adam without use_rho_log1p needs grad_mult > 1 to avoid float precision "
                             f"loss when squaring tiny gradients, got grad_mult={grad_mult}")
        if not (isinstance(n_theta, numbers.Integral) and n_theta >= 1):
            raise ValueError(f"n_theta must be an integer >= 1, got {n_theta!r}")
        if not 0.0 <= min_prob_frac < 1.0:
            raise ValueError(f"min_prob_frac must be in [0, 1), got {min_prob_frac}")
        if not (isinstance(paths_per_step, numbers.Integral) and paths_per_step >= 1):
            raise ValueError(f"paths_per_step must be an integer >= 1, got {paths_per_step!r}")
        if paths_per_step > 1 and (use_p_adam or use_p_saga):
            raise ValueError("paths_per_step > 1 mixes paths in one gradient, but P-Adam and P-SAGA keep "
                             "per-path state: set use_p_adam=False and use_p_saga=False")
        if p <= 0:
            raise ValueError(f"p must be positive, got {p}")
        for name, beta in (("p_adam_b1", p_adam_b1), ("p_adam_b2", p_adam_b2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {beta}")
        self.jtfs_config = dict(J=J, Q1=Q1, Q2=Q2, J_fr=J_fr, Q_fr=Q_fr, T=T, F=F)
        self.shape = shape
        self.p = p
        self.use_rho_log1p = use_rho_log1p
        self.log1p_eps = log1p_eps
        self.grad_mult = grad_mult
        self.use_p_adam = use_p_adam
        self.use_p_saga = use_p_saga
        self.sample_all_paths_first = sample_all_paths_first
        self.n_theta = int(n_theta)
        self.min_prob_frac = min_prob_frac
        self.eps = eps
        self.p_adam_b1, self.p_adam_b2, self.p_adam_eps = p_adam_b1, p_adam_b2, p_adam_eps
        self.paths_per_step = int(paths_per_step)
        self.cache_target = cache_target

        self._jtfs_cache: Dict[tuple, JTFS] = {}
        if shape is not None:
            layout = self._jtfs_for(shape, torch.device("cpu"), torch.float32)
        else:
            # The path set does not depend on the length: any valid length gives it.
            layout = JTFS(max(2**J, T if isinstance(T, int) else 0), **self.jtfs_config)
        self.paths = layout.paths
        self.scrapl_keys = layout.keys
        self.n_paths = layout.n_paths
        self.unif_prob = 1.0 / self.n_paths
        self.min_prob = self.unif_prob * self.min_prob_frac

        self.sampler = PathSampler(self.n_paths, sample_all_paths_first)
        self.loaded_probs_path: Optional[str] = None
        self._init_theta_is()
        if probs_path is not None:
            self.load_probs(probs_path)
        self.curr_path_idx: Optional[int] = None
        self.curr_path_idxs: List[int] = []
        self.step_count = 0

        self.attached_params: List[Tensor] = []
        self._states: List[PathwiseState] = []
        self._hooks: list = []
        self._pending: set = set()
        self._target: Optional[tuple] = None
        log.info("SCRAPLLoss: J=%s, Q1=%s, Q2=%s, J_fr=%s, Q_fr=%s, T=%s, F=%s; %d paths (unif_prob %.8f); "
                 "p_adam=%s, p_saga=%s, grad_mult=%g, log1p=%s", J, Q1, Q2, J_fr, Q_fr, T, F, self.n_paths,
                 self.unif_prob, use_p_adam, use_p_saga, grad_mult, use_rho_log1p)

    # ------------------------------------------------------------------ JTFS
    def _jtfs_for(self, n: int, device: torch.device, dtype: torch.dtype) -> JTFS:
        if self.shape is not None and n != self.shape:
            raise ValueError(f"signals have {n} samples but this loss was built for shape={self.shape} "
                             f"(pass shape=None to accept any length)")
        key = (n, device, dtype)
        if key not in self._jtfs_cache:
            base_key = (n, torch.device("cpu"), torch.float32)
            if base_key not in self._jtfs_cache:
                self._jtfs_cache[base_key] = JTFS(n, **self.jtfs_config)
            self._jtfs_cache[key] = copy.deepcopy(self._jtfs_cache[base_key]).to(device=device, dtype=dtype)
        return self._jtfs_cache[key]

    @property
    def jtfs(self) -> JTFS:
        """The float32 CPU transform of the configured ``shape``."""
        if self.shape is None:
            raise AttributeError("this loss accepts any length (shape=None): use jtfs_for(n)")
        return self._jtfs_for(self.shape, torch.device("cpu"), torch.float32)

    def jtfs_for(self, n: int, device="cpu", dtype=torch.float32) -> JTFS:
        """The (cached) transform for signals of ``n`` samples on ``device`` in ``dtype``."""
        return self._jtfs_for(n, torch.device(device), dtype)

    # ---------------------------------------------------------- probabilities
    @property
    def probs(self) -> Tensor:
        return self.sampler.probs

    @probs.setter
    def probs(self, value: Tensor) -> None:
        self.sampler.probs = check_probs(value, self.n_paths, atol=max(self.eps, 1e-9), min_prob=self.min_prob)

    @property
    def path_counts(self):
        return self.sampler.path_counts

    def load_probs(self, probs_path: str) -> None:
        """Load path probabilities from a ``.pt`` file (ours or the reference package's)."""
        self.probs = load_probs_file(probs_path, self.n_paths)
        self.loaded_probs_path = str(probs_path)
        log.info("Loaded path probabilities from %s (min %.6f, max %.6f)", probs_path,
                 self.probs.min().item(), self.probs.max().item())

    def sample_path(self, seed: Optional[int] = None) -> int:
        """Draw a path index from ``probs`` (seeded draws match the reference package)."""
        return self.sampler.draw(seed, consume=self.training)

    # --------------------------------------------------------------- forward
    def _choose_paths(self, seed: Optional[int], path_idx) -> List[int]:
        if path_idx is not None:
            if seed is not None:
                log.warning("seed is ignored when path_idx is given")
            requested = list(path_idx) if isinstance(path_idx, (list, tuple)) else [path_idx]
            return [check_path_index(i, self.n_paths, "path_idx") for i in requested]
        draws = [self.sample_path(seed if i == 0 or seed is None else seed + i) for i in range(self.paths_per_step)]
        return draws

    def _target_coefficients(self, jtfs: JTFS, x_target: Tensor, flat: Tensor, idxs: List[int]) -> Tensor:
        if not self.cache_target:
            with torch.no_grad():
                return jtfs.paths_coefficients(flat, idxs)
        key = (x_target._version, jtfs.N, flat.device, flat.dtype)
        if self._target is None or self._target[0]() is not x_target or self._target[1] != key:
            self._target = (weakref.ref(x_target), key, {})
        cached = self._target[2]
        missing = sorted({i for i in idxs if i not in cached})
        if missing:
            with torch.no_grad():
                for i, coef in zip(missing, jtfs.paths_coefficients(flat, missing).unbind(1)):
                    cached[i] = coef
        return torch.stack([cached[i] for i in idxs], dim=1)

    def forward(self, x: Tensor, x_target: Tensor, seed: Optional[int] = None,
                path_idx: Optional[Union[int, Sequence[int]]] = None) -> Tensor:
        """SCRAPL loss of estimate ``x`` against ``x_target``, both (batch, channels, samples).

        Args:
            seed: draw the path with this seed (same path for the same seed).
            path_idx: evaluate this path (or list of paths) instead of drawing.

        Returns:
            A scalar tensor.
        """
        batch, n = check_pair(x, x_target)
        jtfs = self._jtfs_for(n, x.device, x.dtype)
        idxs = self._choose_paths(seed, path_idx)
        if path_idx is None:
            idxs = [synchronize_path(i, x.device) for i in idxs]
        S = jtfs.paths_coefficients(x.reshape(batch, n), idxs)
        S_target = self._target_coefficients(jtfs, x_target, x_target.reshape(batch, n), idxs)
        log1p_eps = self.log1p_eps if self.use_rho_log1p else None
        loss = path_distance(S, S_target, self.p, log1p_eps).mean()
        self.curr_path_idx, self.curr_path_idxs = idxs[0], idxs
        if self.training:
            for i in idxs:
                self.sampler.count(i)
            self.step_count += 1
            self._pending = set(range(len(self.attached_params)))
        return loss

    # ------------------------------------------------- P-Adam / P-SAGA hooks
    def attach_params(self, params: Iterable[Tensor]) -> None:
        """Attach the trained parameters: their gradients then go through grad_mult, P-Adam and P-SAGA.

        Attaching resets the per-path state; attach before :meth:`load_state_dict`
        when resuming. Attach an empty list to detach.

        Raises:
            TypeError: if an element is not a tensor that requires grad.
        """
        params = list(params)
        for i, param in enumerate(params):
            if not isinstance(param, Tensor) or not param.requires_grad:
                raise TypeError(f"attached parameter {i} must be a tensor that requires grad, got {type(param).__name__}")
        n_previous = len(self.attached_params)
        self._detach_hooks()
        self.attached_params = params
        self._states = [PathwiseState(self.n_paths, self.use_p_adam, self.use_p_saga, self.p_adam_b1,
                                      self.p_adam_b2, self.p_adam_eps) for _ in params]
        for i, param in enumerate(params):
            self._hooks.append(param.register_hook(functools.partial(self._grad_hook, param_idx=i)))
        if params:
            log.info("Attached %d parameter tensors (%d weights)", len(params), sum(q.numel() for q in params))
        else:
            log.info("Detached %d parameter tensors", n_previous)

    def _detach_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self._pending = set()

    def _grad_hook(self, grad: Tensor, param_idx: int) -> Tensor:
        if not self.training or param_idx not in self._pending:
            return grad
        self._pending.discard(param_idx)
        param = self.attached_params[param_idx]
        if param.grad is not None and bool(param.grad.any()):
            raise ValueError(f"attached parameter {param_idx} already holds a gradient: call zero_grad() before "
                             f"each SCRAPL backward (P-Adam/P-SAGA transform one path's gradient)")
        if self.grad_mult != 1.0:
            grad = grad * self.grad_mult
        if self.use_p_adam or self.use_p_saga:
            grad = self._states[param_idx].step(grad, self.curr_path_idx, self.step_count)
        return grad

    def pathwise_state_bytes(self) -> int:
        """Memory held by P-Adam / P-SAGA state (visited paths only)."""
        return sum(s.nbytes() for s in self._states)

    # ----------------------------------------------------------------- state
    def clear(self) -> None:
        """Forget visits, the step counter, per-path gradient state and attached parameters; reset probs to uniform."""
        self.curr_path_idx, self.curr_path_idxs = None, []
        self.sampler.clear()
        self.sampler.probs = torch.full((self.n_paths,), self.unif_prob, dtype=torch.float64)
        self.loaded_probs_path = None
        self.step_count = 0
        self._detach_hooks()
        self.attached_params, self._states = [], []
        self._target = None
        self._clear_theta_is()
        log.info("Cleared state")

    def get_extra_state(self) -> dict:
        return copy.deepcopy({
            "format": 1,
            "n_paths": self.n_paths,
            "step_count": self.step_count,
            "curr_path_idx": self.curr_path_idx,
            "loaded_probs_path": self.loaded_probs_path,
            "sampler": self.sampler.state_dict(),
            "pathwise": [s.state_dict() for s in self._states],
            "theta_is": self._theta_is_state(),
        })

    def set_extra_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != 1:
            raise ValueError("not a SCRAPLLoss state")
        if state["n_paths"] != self.n_paths:
            raise ValueError(f"state is for {state['n_paths']} paths, this loss has {self.n_paths}")
        pathwise = state["pathwise"]
        if pathwise and len(pathwise) != len(self.attached_params):
            raise ValueError(f"state holds P-Adam/P-SAGA state for {len(pathwise)} parameter tensors but "
                             f"{len(self.attached_params)} are attached: call attach_params() first")
        self.sampler.load_state_dict(state["sampler"])
        self.step_count = int(state["step_count"])
        self.curr_path_idx = state["curr_path_idx"]
        self.loaded_probs_path = state["loaded_probs_path"]
        self._load_theta_is_state(state.get("theta_is"))
        for pstate, saved, param in zip(self._states, pathwise, self.attached_params):
            pstate.load_state_dict(saved, param)

    @property
    def path_info(self):
        """Per-path metadata (:class:`scrapl_graph.PathInfo`), in path order."""
        return self.paths
