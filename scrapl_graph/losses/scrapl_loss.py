"""SCRAPLLoss: the JTFS distance of one randomly drawn path per step.

The loss composes the pieces of :mod:`scrapl_graph.scrapl`: a
:class:`~scrapl_graph.scrapl.PathSampler` draws the path, the transforms
compute its coefficients, P-Adam/P-SAGA act through the optimizer form
(:meth:`SCRAPLLoss.make_optimizer`) or the hook form
(:meth:`SCRAPLLoss.attach_params`), and theta-IS fills the path probabilities
(:mod:`.scrapl_theta_is`).
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..checks import check_pair
from ..jtfs import JTFS
from ..jtfs.layout import check_path_index
from ..scrapl import ImportanceTable, PathSampler, PathwiseAdamSAGA, PathwiseConfig, PathwiseHooks, synchronize_path
from ..scrapl.probs_file import load_probs_file, path_set_identity, save_probs
from ..scrapl import curvature
from ..scrapl.sampler import check_probs
from . import scrapl_theta_is as theta_is
from .scrapl_checks import check_config
from .scrapl_paths import ScraplPathSet, TargetCache
from .transforms import TransformCache

log = logging.getLogger(__name__)


class SCRAPLLoss(nn.Module):
    """Scattering Transform with Random Paths for Machine Learning (SCRAPL) for the JTFS.

    Each training call draws a path p of the JTFS (by default uniformly) and
    returns ``mean_b || rho(S_p x_target_b) - rho(S_p x_b) ||_p``. Under
    uniform sampling its expectation and the expectation of its gradient are
    the full-tree :class:`JTFSLoss` and its gradient (paper, Prop. 3.1).
    Under probabilities pi, they are ``sum_p pi_p d_p`` and its gradient.

    The path set is the reference's second-order paths (same indices). With
    ``first_order_share`` s, the first-order paths (:meth:`JTFS.first_order`)
    join it as indices ``P2 .. P2 + P1 - 1``, each with its own P-Adam/P-SAGA
    state, count and theta-IS values, drawn with probability ``s / P1`` (a
    second-order path: ``(1 - s) / P2``). A draw's value is still the raw path
    distance: its expectation is ``(1 - s) mean_{P2} d_p + s mean_{P1} d_p``,
    ``JTFSLoss(first_order=True)`` for ``"uniform"`` (``s = P1 / (P2 + P1)``).
    theta-IS keeps the share: eq. 10 over the whole set, renormalized within
    each order to masses ``1 - s`` and ``s`` (:mod:`scrapl_graph.scrapl.order_share`).

    P-Adam and P-SAGA (paper, Algorithm 1; :mod:`scrapl_graph.scrapl.pathwise`)
    act in one of two forms with the same math: the optimizer
    ``loss.make_optimizer(params, lr)`` (a :class:`~scrapl_graph.scrapl.PathwiseAdamSAGA`),
    or, as in the reference package, ``loss.attach_params(params)`` with plain
    SGD. This departs from the reference package ``scrapl-loss`` 0.1.0, which
    divides the P-SAGA average by one path fewer when the path was seen
    before, uses k + 1 in the bias correction, and adds epsilon outside the
    square root.

    Dtype and device: see :mod:`scrapl_graph.losses.transforms` (built in the
    default dtype, follows the input's floating dtype, computes on its own device).

    Arguments and defaults are the reference package's, plus the extras from ``paths_per_step`` on;
    ``shape`` may be None (any length).

    Args:
        shape: signal length, or None for any length.
        J, Q1, Q2, J_fr, Q_fr, T, F: the JTFS (see :class:`scrapl_graph.JTFS`).
        p: order of the per-path norm.
        use_rho_log1p: compare ``log1p(S / log1p_eps)`` instead of S.
        log1p_eps: epsilon of the log compression.
        grad_mult: factor applied to gradients before P-Adam (guards against
            float precision loss when squaring tiny JTFS gradients); must be
            > 1 with P-Adam and no log1p.
        use_p_adam, use_p_saga: the per-path gradient stabilisers.
        sample_all_paths_first: visit every path once before sampling from probs.
        n_theta: number of synth parameters (theta-importance sampling).
        min_prob_frac: floor of every theta-IS path probability, as a fraction of its prior
            probability (1/n_paths without first-order paths).
        probs_path: a ``.pt`` file of path probabilities (ours or the reference's), used as given.
        eps: numerical floor for probability computations.
        p_adam_b1, p_adam_b2, p_adam_eps: P-Adam hyperparameters.
        paths_per_step: draw this many paths (i.i.d.) per call and average their
            distances (one shared first-order scalogram). Needs P-Adam and P-SAGA off.
        first_order_share: None (second-order paths only), a number in (0, 1) or
            ``"uniform"``: the probability mass of the first-order paths, which then join the set.
        theta_weights: ``w_u >= 0`` per theta coordinate (``n_theta`` of them, sum > 0):
            eq. 10 becomes ``sum_u w_u pi_u / sum_u w_u`` (None: equal weights, the mean),
            to direct theta-IS toward a group of parameters.
        optimizer: what :meth:`make_optimizer` (a run's default) makes: ``"pathwise"``
            (P-Adam/P-SAGA, Algorithm 1) or ``"adam"`` (one Adam state for all paths; needs both off).
        cache_target: reuse a target's path coefficients while the same target
            tensor (same object, unmodified) is passed again (never while learnable filters train).
        learnable: wavelet families with trainable centre frequencies and bandwidths
            (``True``: all; see :mod:`scrapl_graph.jtfs.parametric`): one transform, one length.
        check_values: the NaN/Inf check of inputs (None: on CPU only; see :mod:`scrapl_graph.checks`).
        compare: ``"example"`` (each estimate against its target) or ``"batch_mean"`` (the
            batch's mean coefficients against the targets' mean: see :mod:`.distance`).

    Attributes:
        n_paths, unif_prob, probs, curr_path_idx, path_counts: as in the reference
            (``n_paths`` counts both orders).
        paths: :class:`~scrapl_graph.PathInfo` per path (``order`` 2, then 1); ``n_second``, ``n_first``.
        first_order_share: the first order's mass as a float (None: second order only).
        prior: the probabilities before theta-IS.
        curr_path_idxs: all paths of the last call (``paths_per_step`` of them).
        step_count: the iteration counter k of Algorithm 1 (training calls so far).
    """

    def __init__(self, shape: Optional[int] = None, J: int = 12, Q1: int = 8, Q2: int = 2, J_fr: int = 3,
                 Q_fr: int = 2, T: Optional[Union[str, int]] = None, F: Optional[Union[str, int]] = None,
                 p: float = 2, use_rho_log1p: bool = False, log1p_eps: float = 1e-3, grad_mult: float = 1e8,
                 use_p_adam: bool = True, use_p_saga: bool = True, sample_all_paths_first: bool = False,
                 n_theta: int = 1, min_prob_frac: float = 0.0, probs_path: Optional[str] = None,
                 eps: float = 1e-12, p_adam_b1: float = 0.9, p_adam_b2: float = 0.999, p_adam_eps: float = 1e-8,
                 paths_per_step: int = 1, cache_target: bool = True, check_values: Optional[bool] = None,
                 first_order_share: Union[None, float, str] = None, theta_weights: Optional[Sequence[float]] = None,
                 optimizer: str = "pathwise", learnable=(), compare: str = "example"):
        super().__init__()
        check_config(use_p_adam, use_rho_log1p, grad_mult, n_theta, min_prob_frac, paths_per_step, use_p_saga,
                     p, (p_adam_b1, p_adam_b2), optimizer)
        self.optimizer = optimizer
        self.jtfs_config = dict(J=J, Q1=Q1, Q2=Q2, J_fr=J_fr, Q_fr=Q_fr, T=T, F=F)
        self.shape, self.p = shape, p
        self.use_rho_log1p, self.log1p_eps, self.grad_mult = use_rho_log1p, log1p_eps, grad_mult
        self.use_p_adam, self.use_p_saga = use_p_adam, use_p_saga
        self.sample_all_paths_first = sample_all_paths_first
        self.n_theta, self.min_prob_frac, self.eps = int(n_theta), min_prob_frac, eps
        self.p_adam_b1, self.p_adam_b2, self.p_adam_eps = p_adam_b1, p_adam_b2, p_adam_eps
        self.paths_per_step, self.cache_target = int(paths_per_step), cache_target

        self.transforms = TransformCache(dict(self.jtfs_config, learnable=learnable), shape, check_values)
        # The path set does not depend on the length: any valid length gives it.
        layout = self.transforms.get(shape) if shape is not None else JTFS(max(2**J, T if isinstance(T, int) else 0),
                                                                             **self.jtfs_config)
        self.path_set = ScraplPathSet(layout, first_order_share, compare)
        self.paths, self.scrapl_keys, self.n_paths = self.path_set.paths, self.path_set.keys, self.path_set.n_paths
        self.n_second, self.n_first, self.prior = self.path_set.n_second, self.path_set.n_first, self.path_set.prior
        self.first_order_share = self.path_set.share
        self.unif_prob = 1.0 / self.n_paths
        self.min_prob = self.min_prob_frac * float(self.prior.min())
        self.identity = path_set_identity(self.jtfs_config, self.scrapl_keys)

        self.sampler = PathSampler(self.n_paths, sample_all_paths_first)
        self.sampler.probs = self.prior.clone()
        self.importance = ImportanceTable(self.n_theta, self.n_paths, min_prob_frac, eps, theta_weights)
        self.theta_weights = self.importance.theta_weights
        self.pathwise = PathwiseHooks(self, PathwiseConfig(self.n_paths, use_p_adam, use_p_saga, p_adam_b1,
                                                           p_adam_b2, p_adam_eps, grad_mult))
        self.loaded_probs_path: Optional[str] = None
        if probs_path is not None:
            self.load_probs(probs_path)
        self.curr_path_idx: Optional[int] = None
        self.curr_path_idxs: List[int] = []
        self.step_count = 0
        self.target_cache = TargetCache(self.path_set)
        log.info("SCRAPLLoss: %s; %d paths; p_adam=%s, p_saga=%s, grad_mult=%g, log1p=%s", self.jtfs_config,
                 self.n_paths, use_p_adam, use_p_saga, grad_mult, use_rho_log1p)

    # ------------------------------------------------------------------ JTFS
    @property
    def jtfs(self) -> JTFS:
        """The transform of the configured ``shape`` in the loss's dtype."""
        if self.shape is None:
            raise AttributeError("this loss accepts any length (shape=None): use jtfs_for(n)")
        return self.transforms.get(self.shape)

    def jtfs_for(self, n: int, device=None, dtype: Optional[torch.dtype] = None) -> JTFS:
        """The (cached) transform for signals of ``n`` samples in ``dtype`` (default: the loss's).

        Raises:
            ValueError: if ``device`` is not the loss's device (move the loss with ``.to``).
        """
        own = self.transforms.device
        wanted = None if device is None else torch.device(device)
        if wanted is not None and (wanted.type != own.type or wanted.index not in (None, own.index)):
            raise ValueError(f"this loss is on {self.transforms.device}, not {device}: move it with .to({device!r})")
        return self.transforms.get(n, dtype)

    @property
    def path_info(self):
        """Per-path metadata (:class:`scrapl_graph.PathInfo`, ``order`` 2 or 1), in path order."""
        return self.paths

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
        """Load path probabilities from a ``.pt`` file: ours (checked against this loss's
        JTFS configuration and path set, first-order paths included) or the reference package's
        bare tensor (checked by length only). They are used as given: the first-order share
        shapes the prior and theta-IS, not loaded probabilities.

        Raises:
            ValueError: for a file of another configuration or path set, or a bare tensor of another length.
        """
        self.probs = load_probs_file(probs_path, self.n_paths, self.identity)
        self.loaded_probs_path = str(probs_path)
        log.info("Loaded path probabilities from %s (min %.6f, max %.6f)", probs_path,
                 self.probs.min().item(), self.probs.max().item())

    def save_probs(self, path: str) -> None:
        """Write ``probs`` with this loss's identity (JTFS configuration and path set) to ``path``."""
        save_probs(path, self.probs, self.identity)

    def sample_path(self, seed: Optional[int] = None) -> int:
        """Draw a path index from ``probs`` (seeded draws match the reference package)."""
        return self.sampler.draw(seed, consume=self.training)

    def manual_seed(self, seed: int) -> None:
        """Restart the sampler's training stream from ``seed`` (training loops call this for repeatable runs)."""
        self.sampler.manual_seed(seed)

    def train(self, mode: bool = True) -> "SCRAPLLoss":
        """Switch mode; entering evaluation rewinds the evaluation draws, so every evaluation pass sees the same paths."""
        if not mode:
            self.sampler.restart_evaluation()
        return super().train(mode)

    # --------------------------------------------------------------- forward
    def _choose_paths(self, seed: Optional[int], path_idx, device: torch.device) -> List[int]:
        if path_idx is not None:
            if seed is not None:
                log.warning("seed is ignored when path_idx is given")
            requested = list(path_idx) if isinstance(path_idx, (list, tuple)) else [path_idx]
            return [check_path_index(i, self.n_paths, "path_idx") for i in requested]
        draws = [self.sample_path(seed if i == 0 or seed is None else seed + i) for i in range(self.paths_per_step)]
        return [synchronize_path(i, device) for i in draws]

    def forward(self, x: Tensor, x_target: Tensor, seed: Optional[int] = None,
                path_idx: Optional[Union[int, Sequence[int]]] = None) -> Tensor:
        """SCRAPL loss of estimate ``x`` against ``x_target``, both (batch, channels, samples).

        Args:
            seed: draw the path with this seed (same path for the same seed).
            path_idx: evaluate this path (or list of paths) instead of drawing.

        Returns:
            A scalar tensor.

        Raises:
            TypeError, ValueError: for bad input (see :func:`scrapl_graph.checks.check_pair`)
                or a path index out of range.
        """
        batch, n = check_pair(x, x_target, self.transforms.device, check_values=self.transforms.check_values)
        jtfs = self.transforms.get(n, x.dtype)
        idxs = self._choose_paths(seed, path_idx, x.device)
        with jtfs.shared_filters():  # estimate and target read the same regenerated filters
            S = self.path_set.coefficients(jtfs, x.reshape(batch, n), idxs)
            S_target = self.target_cache.coefficients(jtfs, x_target, x_target.reshape(batch, n), idxs,
                                                      self.cache_target)
        log1p_eps = self.log1p_eps if self.use_rho_log1p else None
        loss = self.path_set.distances(S, S_target, idxs, self.p, log1p_eps).mean()
        self.curr_path_idx, self.curr_path_idxs = idxs[0], idxs
        if self.training:
            for i in idxs:
                self.sampler.count(i)
            self.step_count += 1
            self.pathwise.arm()
        return loss

    # ------------------------------------------------------ P-Adam / P-SAGA
    def make_optimizer(self, params: Iterable, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """This loss's optimizer for ``params``, the default of training loops: the optimizer form of
        P-Adam / P-SAGA (:class:`~scrapl_graph.scrapl.PathwiseAdamSAGA`), or Adam with ``optimizer="adam"``."""
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        return PathwiseAdamSAGA(params, lr=lr, weight_decay=weight_decay, loss=self)

    def attach_params(self, params: Iterable[Tensor]) -> None:
        """Attach the trained parameters: their gradients then go through grad_mult, P-Adam and P-SAGA
        during ``backward`` (use plain SGD). Attaching resets the per-path state; attach before
        :meth:`load_state_dict` when resuming. Attach an empty list to detach.

        Raises:
            TypeError: if an element is not a tensor that requires grad.
        """
        self.pathwise.attach(params)

    def check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Warn when ``optimizer`` does not suit the hook form (P-Adam/P-SAGA expect plain SGD)."""
        self.pathwise.check_optimizer(optimizer)

    @property
    def attached_params(self) -> List[Tensor]:
        return self.pathwise.params

    def pathwise_state_bytes(self) -> int:
        """Memory held by the hook form's P-Adam / P-SAGA state (visited paths only)."""
        return self.pathwise.nbytes()

    # ------------------------------------------------------------ theta-IS
    def update_prob(self, path_idx: int, val: Union[float, Tensor], theta_idx: int = 0) -> None:
        """Record the importance ``val = C[theta_idx, path_idx]`` and update ``probs`` (paper, eq. 10,
        weighted by ``theta_weights``, within each order with first-order paths; see
        :class:`~scrapl_graph.scrapl.ImportanceTable` for partially updated sets).

        Raises:
            ValueError: if probabilities were loaded from a file, an index is out
                of range, or ``val`` is negative or not finite.
        """
        if self.loaded_probs_path is not None:
            raise ValueError(f"cannot update probabilities loaded from {self.loaded_probs_path!r}; call clear() first")
        self.importance.update(path_idx, val, theta_idx)
        self.probs = self.path_set.probs_from_importance(self.importance)

    def warmup_lc_hvp(self, theta_fn: Callable[..., Tensor], synth_fn: Callable[..., Tensor],
                      theta_fn_kwargs: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]],
                      params: Sequence[Tensor], synth_fn_kwargs=None, start_path_idx: int = 0,
                      end_path_idx: Optional[int] = None, save_dir: Optional[str] = "scrapl_warmup",
                      n_iter: int = 20, agg: str = "none", force_multibatch: bool = False, **options) -> Dict[int, Tensor]:
        r"""theta-IS warmup: path probabilities from the local curvature of each path's loss.

        For each path p in ``[start_path_idx, end_path_idx)`` and theta coordinate u,
        ``C[u, p] = |lambda_max(grad_w(s_{x,u,p}(w) grad_w E_{x,u}(w)))|`` (paper, eq. 12) by power
        iteration (:mod:`scrapl_graph.scrapl.curvature`), then :meth:`update_prob` (eq. 10).

        Args:
            theta_fn: encoder, ``theta_fn(**theta_fn_kwargs[i])`` -> theta ``(..., n_theta)``;
                deterministic. For graph parameters: return the parameter tensor itself.
            synth_fn: synth, ``synth_fn(theta, **synth_fn_kwargs[i])`` -> audio ``(B, C, N)``; deterministic.
            theta_fn_kwargs: one batch (dict) or a list of batches, each holding the target audio ``"x"``;
                over several batches the operators are summed.
            params: the weights w that theta depends on.
            synth_fn_kwargs: extra synth arguments, one dict per batch (or a dict for one batch).
            start_path_idx, end_path_idx: the path range (default: all paths).
            save_dir: directory for the values (atomic ``vals_<p>.pt`` files beside a manifest; a
                re-run skips the paths done; ``probs.pt`` when all are done), or None.
            n_iter: maximum power-iteration steps.
            agg: ``"none"``: one eigenvalue over all params; ``"mean"``, ``"max"``, ``"med"``: one
                per parameter tensor, then aggregated.
            force_multibatch: accepted for compatibility (one batch or a list of one are the same here).
            **options: ``tol`` (relative change that stops a power iteration, 1e-4), ``seed`` (of the
                start vectors, 0), ``theta_hessian`` (``"full"``, ``"per_example"`` or ``"auto"``),
                ``hvp_chunk`` (tangents per double-backward pass), ``distributed`` (shard over
                ``torch.distributed`` ranks; default: when a group is initialized), ``progress``.

        Returns:
            ``{path_idx: (G, n_theta) values}`` for the whole range (all shards).

        Raises:
            ValueError: for bad ranges, options or inputs, a ``save_dir`` written for another
                configuration, loaded probabilities or attached parameters.
            TypeError: for ill-typed inputs.
        """
        return theta_is.warmup_lc_hvp(self, theta_fn, synth_fn, theta_fn_kwargs, params, synth_fn_kwargs,
                                      start_path_idx, end_path_idx, save_dir, n_iter, agg, force_multibatch,
                                      **options)

    def calc_theta_eigs(self, path_idx: int, theta_fn: Callable[..., Tensor], synth_fn: Callable[..., Tensor],
                        theta_fn_kwargs, params: Sequence[Tensor], synth_fn_kwargs=None, **options) -> Tensor:
        """``(G, n_theta)`` signed largest eigenvalues of path ``path_idx``, one row per parameter group
        (options as :meth:`warmup_lc_hvp`, plus ``param_groups``)."""
        return theta_is.calc_theta_eigs(self, path_idx, theta_fn, synth_fn, theta_fn_kwargs, params,
                                        synth_fn_kwargs, **options)

    check_is_deterministic = staticmethod(curvature.check_is_deterministic)

    def load_probs_from_warmup_dir(self, warmup_dir: str, agg: str = "none") -> None:
        """Set ``probs`` from the values of a (possibly sharded or partial) warmup directory; clears the
        loss first. Directories of the reference package (no manifest) are read as well.

        Raises:
            ValueError: if the directory does not exist, holds no values, or was written for another
                JTFS configuration, path set or ``n_theta``.
        """
        theta_is.load_probs_from_warmup_dir(self, warmup_dir, agg)

    def plot_probs(self, path: str, sample_rate: float, **kwargs) -> str:
        """Write a PNG of the path probabilities over the rate-scale plane, first-order paths in a strip
        of their own (:func:`scrapl_graph.plotting.plot_probs`)."""
        from ..plotting import plot_probs

        return plot_probs(self, path, sample_rate=sample_rate, **kwargs)

    # ----------------------------------------------------------------- state
    def clear(self) -> None:
        """Forget visits, the step counter, per-path state, attached parameters and theta-IS values;
        reset probs to the prior (uniform without first-order paths)."""
        self.curr_path_idx, self.curr_path_idxs = None, []
        self.sampler.clear()
        self.sampler.probs = self.prior.clone()
        self.loaded_probs_path = None
        self.step_count = 0
        self.pathwise.detach()
        self.target_cache.clear()
        self.importance.clear()
        log.info("Cleared state")

    def get_extra_state(self) -> dict:
        return copy.deepcopy({
            "format": 1, "n_paths": self.n_paths, "step_count": self.step_count,
            "curr_path_idx": self.curr_path_idx, "loaded_probs_path": self.loaded_probs_path,
            "sampler": self.sampler.state_dict(), "pathwise": self.pathwise.state_dict(),
            "theta_is": self.importance.state_dict(),
        })

    def set_extra_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != 1:
            raise ValueError("not a SCRAPLLoss state")
        if state["n_paths"] != self.n_paths:
            raise ValueError(f"state is for {state['n_paths']} paths, this loss has {self.n_paths}")
        self.pathwise.load_state_dict(state["pathwise"])
        self.sampler.load_state_dict(state["sampler"])
        self.step_count = int(state["step_count"])
        self.curr_path_idx = state["curr_path_idx"]
        self.loaded_probs_path = state["loaded_probs_path"]
        self.importance.load_state_dict(state.get("theta_is"))
