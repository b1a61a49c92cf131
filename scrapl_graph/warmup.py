"""theta-importance sampling (theta-IS): path probabilities from per-parameter curvature (paper, section 3.4).

For synth parameter u and path p, ``C[u, p]`` measures how strongly path p's
loss reacts to theta_u; the path distribution is

    pi_p = (1/U) sum_u C[u, p] / sum_p' C[u, p']        (paper, eq. 10)

floored at ``min_prob_frac / n_paths``. With an encoder ``theta = E_x(w)``
and the path loss ``L_p``, the paper defines (eqs. 11-12)

    s_{x,u,p}(w) = dL_p/dtheta_u (E_x(w)),
    C[u, p] = E_x[ lambda_max( grad_w( s_{x,u,p}(w) grad_w E_{x,u}(w) ) ) ],

the largest eigenvalue magnitude of the Jacobian ``A_u`` of the vector field
``g_u(w) = J(w)^T (e_u * grad_theta L_p)`` (J the encoder's Jacobian, e_u
selecting coordinate u of every example), found by power iteration on the
products ``A_u^T v = grad_w(g_u(w) . v)`` as in the reference package.

How it is computed here. ``A_u`` depends on the loss only through its
gradient ``a`` and Hessian ``H`` with respect to theta at ``theta_0 = E_x(w)``:

    A_u^T v = J^T H (e_u * J v) + grad_w((e_u * a) . J(w) v)|_{a fixed}.

So, per path and batch, ``a`` and the small ``(B U) x (B U)`` matrix ``H``
are computed once through the JTFS (double backward, all tangent directions in
one pass over a batch of copies of theta_0), and the power iteration then runs
on the exact second-order model ``a . d + d^T H d / 2`` (``d = E_x(w) -
theta_0``), whose products only traverse the encoder. The U power iterations
run together: each step is one ``torch.autograd.grad(..., is_grads_batched=True)``
over the U coordinates. For direct optimization of graph parameters the
"encoder" returns the parameter tensor itself, and C[u, p] is the curvature
of path p's loss along theta_u.

:class:`WarmupMixin` gives :class:`scrapl_graph.SCRAPLLoss` the bookkeeping of
these values (kept as logs, with the reference package's semantics for
partially updated sets), the warmup itself (resumable, shardable over
``torch.distributed`` ranks) and loading of a warmup directory.
"""
from __future__ import annotations

import json
import logging
import math
import numbers
import os
from collections import defaultdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .io import atomic_path
from .jtfs.layout import check_path_index
from .losses.distance import path_distance

log = logging.getLogger(__name__)

AGGREGATIONS = ("none", "mean", "max", "med")
THETA_HESSIANS = ("auto", "full", "per_example")
MANIFEST_NAME = "warmup.json"
MANIFEST_FORMAT = 1
#: Default bound on the samples (copies x batch x channels x length) that one
#: double-backward pass of the theta Hessian pushes through the JTFS.
HESSIAN_PASS_SAMPLES = 2 ** 22


def power_iteration(matvec: Callable[[Tensor, Tensor], Tensor], v0: Tensor, n_iter: int = 20,
                    tol: float = 1e-4) -> Tuple[Tensor, int]:
    r"""Dominant eigenvalues of U linear operators ``A_0 .. A_{U-1}`` at once.

    Row u of ``v`` iterates ``v <- A_u v / ||A_u v||`` and estimates the
    eigenvalue by the Rayleigh quotient ``lambda_u = v . A_u v`` (``||v|| = 1``).
    Row u stops once ``|lambda_u^{(k)} - lambda_u^{(k-1)}| < tol |lambda_u^{(k)}|``
    (the first step never stops, as its predecessor is taken as 0) or when
    ``A_u v = 0`` (then ``lambda_u = 0``); the others go on, up to ``n_iter`` steps.

    Args:
        matvec: ``matvec(v, rows)`` returns ``A_rows v`` for ``v`` of shape
            ``(len(rows), D)``, ``rows`` a long tensor of operator indices: all
            the operators still iterating are applied in one call.
        v0: ``(U, D)`` start vectors (normalised here; must be nonzero).
        n_iter: maximum number of steps.
        tol: relative change of the estimate below which a row has converged.

    Returns:
        ``(eigs, steps)``: float64 ``(U,)`` signed eigenvalue estimates (the
        largest magnitude when the iteration converged), and the number of
        ``matvec`` calls.

    Raises:
        ValueError: for a bad ``v0``, ``n_iter`` or ``tol``.
    """
    if not torch.is_tensor(v0) or v0.ndim != 2 or not v0.is_floating_point():
        raise ValueError(f"v0 must be a floating-point tensor of shape (U, D), got {getattr(v0, 'shape', v0)}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
        raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    norms = v0.norm(dim=1, keepdim=True)
    if not bool((norms > 0).all()):
        raise ValueError("every start vector must be nonzero")
    v = v0 / norms
    eigs = torch.zeros(v.shape[0], dtype=torch.float64)
    previous = torch.zeros_like(eigs)
    active = torch.arange(v.shape[0])
    steps = 0
    while active.numel() and steps < n_iter:
        av = matvec(v[active], active).detach()
        steps += 1
        estimate = (v[active] * av).sum(dim=1).double()
        av_norm = av.norm(dim=1, keepdim=True)
        null = av_norm[:, 0] == 0
        estimate = torch.where(null, torch.zeros_like(estimate), estimate)
        eigs[active] = estimate
        # A row in the operator's null space has converged (to 0): keep its vector.
        v[active] = torch.where(null[:, None], v[active], av / av_norm.clamp_min(torch.finfo(av.dtype).tiny))
        change = (estimate - previous[active]).abs()
        done = null | (change < tol * estimate.abs())
        previous[active] = estimate
        active = active[~done]
    return eigs, steps


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


def theta_size(source: Any) -> int:
    """``n_theta`` of a theta layout: an int, a :class:`~scrapl_graph.graph.ThetaLayout`,
    a :class:`~scrapl_graph.graph.GraphSynth` or anything with an ``n_theta`` attribute.

    Raises:
        TypeError: if no size can be read from ``source``.
        ValueError: if it is not a positive integer.
    """
    size = source if isinstance(source, numbers.Integral) else getattr(source, "n_theta", None)
    if size is None or isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"expected an int, a ThetaLayout or a GraphSynth, got {type(source).__name__}")
    if size < 1:
        raise ValueError(f"n_theta must be >= 1, got {size}")
    return int(size)


def _atomic_save(obj: Any, path: str) -> None:
    """Write ``obj`` to ``path`` so that readers see the old file or the complete new one, never a torn one."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            if path.endswith(".json"):
                f.write(json.dumps(obj, indent=1, sort_keys=True).encode())
            else:
                torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


def _vals_path(save_dir: str, path_idx: int) -> str:
    return os.path.join(save_dir, f"vals_{path_idx}.pt")


def _param_shapes(params) -> List[List[int]]:
    return [list(q.shape) for q in params]


def _distributed_world(distributed: Optional[bool]) -> Tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) when not sharding."""
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and not initialized:
        raise ValueError("distributed=True needs an initialized torch.distributed process group "
                         "(launch with torchrun and call init_process_group first)")
    if distributed is False or not initialized:
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def _shard(start: int, end: int, rank: int, world: int) -> range:
    """Contiguous, disjoint, near-equal ranges of [start, end), one per rank."""
    n = end - start
    lo = start + (n * rank) // world
    hi = start + (n * (rank + 1)) // world
    return range(lo, hi)


def _coordinate_masks(theta: Tensor) -> Tensor:
    """``(U, *theta.shape)``: mask u selects coordinate u (last axis) of every example."""
    n_theta = theta.shape[-1]
    eye = torch.eye(n_theta, dtype=theta.dtype, device=theta.device)
    return eye.reshape((n_theta,) + (1,) * (theta.ndim - 1) + (n_theta,)).expand((n_theta,) + tuple(theta.shape))


def _flat_grads(outputs: Tensor, inputs: Sequence[Tensor], grad_outputs: Tensor, create_graph: bool) -> Tensor:
    """Batched vector-Jacobian products ``(K, sum numel)``: one pass over the K rows of ``grad_outputs``."""
    grads = torch.autograd.grad(outputs, list(inputs), grad_outputs=grad_outputs, is_grads_batched=True,
                                create_graph=create_graph, retain_graph=True, allow_unused=True,
                                materialize_grads=True)
    return torch.cat([g.reshape(grad_outputs.shape[0], -1) for g in grads], dim=1)


def synth_is_per_example(synth_fn: Callable[..., Tensor], theta: Tensor, synth_kwargs: Mapping[str, Any]) -> bool:
    """Whether example b of ``synth_fn(theta)`` depends on theta row b only, judged by its Jacobian at ``theta``.

    One vector-Jacobian product per example, through the synth alone: the
    gradient of example b's audio (against a random cotangent) must vanish on
    every other row of theta. A flat theta ``(n_theta,)`` is one example.
    """
    if theta.ndim < 2:
        return True
    theta = theta.detach().requires_grad_()
    x_hat = synth_fn(theta, **synth_kwargs)
    if not torch.is_tensor(x_hat) or x_hat.shape[0] != theta.shape[0] or not x_hat.requires_grad:
        return False
    generator = torch.Generator().manual_seed(0)
    for b in range(theta.shape[0]):
        probe = torch.zeros_like(x_hat)
        probe[b] = torch.randn(x_hat.shape[1:], generator=generator, dtype=x_hat.dtype).to(x_hat.device)
        (grad,) = torch.autograd.grad(x_hat, theta, grad_outputs=probe, retain_graph=True, allow_unused=True,
                                      materialize_grads=True)
        others = torch.cat([grad[:b], grad[b + 1:]])
        if others.numel() and bool((others != 0).any()):
            return False
    return True


class _ThetaModel:
    """The exact second-order model of one path's loss around theta_0 (one batch).

    ``grad(theta) = a + H (theta - theta_0)``, with ``H`` full ``(n, n)`` over
    the ``n = B U`` flattened entries, or per example ``(B, U, U)``.
    """

    def __init__(self, theta0: Tensor, a: Tensor, hessian: Tensor):
        self.theta0, self.a, self.hessian = theta0, a, hessian

    def grad(self, theta: Tensor) -> Tensor:
        delta = theta - self.theta0
        if self.hessian.ndim == 2:
            return self.a + (self.hessian @ delta.reshape(-1)).reshape(theta.shape)
        flat = delta.reshape(-1, delta.shape[-1])
        return self.a + torch.einsum("buv,bv->bu", self.hessian, flat).reshape(theta.shape)


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
        # Every row carries the mass left by the floor, (1 - min_prob_frac), as
        # the rows that update_prob rewrites do: so probs sum to 1 at all times,
        # also while some theta rows still wait for their second value.
        self.all_log_probs = torch.full((self.n_theta, self.n_paths),
                                        math.log(self.unif_prob) + math.log1p(-self.min_prob_frac),
                                        dtype=torch.float64)

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
        path_idx = check_path_index(path_idx, self.n_paths, "path_idx")
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

    # ------------------------------------------------------------ warmup
    @staticmethod
    def check_is_deterministic(theta_fn: Callable[..., Tensor], theta_fn_kwargs: Mapping[str, Any],
                               synth_fn: Callable[..., Tensor],
                               synth_fn_kwargs: Optional[Mapping[str, Any]] = None) -> bool:
        """Whether ``theta_fn`` and ``synth_fn`` give the same output twice on the same input.

        The warmup evaluates both several times and needs identical results
        (e.g. fixed random time shifts of a synth); a mismatch is logged as a
        warning.

        Args:
            theta_fn: encoder, called as ``theta_fn(**theta_fn_kwargs)``.
            theta_fn_kwargs: one batch of its inputs.
            synth_fn: synth, called as ``synth_fn(theta, **synth_fn_kwargs)``.
            synth_fn_kwargs: extra synth inputs (default none).

        Returns:
            True if both outputs agree (``torch.allclose``) across two calls.
        """
        synth_fn_kwargs = {} if synth_fn_kwargs is None else synth_fn_kwargs
        with torch.no_grad():
            theta_1, theta_2 = theta_fn(**theta_fn_kwargs), theta_fn(**theta_fn_kwargs)
            if not torch.allclose(theta_1, theta_2):
                log.warning("theta_fn is not deterministic (max difference %.3g)",
                            (theta_1 - theta_2).abs().max().item())
                return False
            x_1, x_2 = synth_fn(theta_1, **synth_fn_kwargs), synth_fn(theta_1, **synth_fn_kwargs)
            if not torch.allclose(x_1, x_2):
                log.warning("synth_fn is not deterministic (max difference %.3g)", (x_1 - x_2).abs().max().item())
                return False
        return True

    def _batches(self, theta_fn_kwargs, synth_fn_kwargs) -> List[Tuple[dict, dict]]:
        """Normalise one batch (dict) or several (list of dicts) into (theta kwargs, synth kwargs) pairs."""
        if isinstance(theta_fn_kwargs, Mapping):
            theta_fn_kwargs = [theta_fn_kwargs]
            if isinstance(synth_fn_kwargs, Mapping):
                synth_fn_kwargs = [synth_fn_kwargs]
        if not isinstance(theta_fn_kwargs, (list, tuple)) or not theta_fn_kwargs:
            raise TypeError("theta_fn_kwargs must be a dict (one batch) or a non-empty list of dicts")
        if synth_fn_kwargs is None:
            synth_fn_kwargs = [{}] * len(theta_fn_kwargs)
        if not isinstance(synth_fn_kwargs, (list, tuple)) or len(synth_fn_kwargs) != len(theta_fn_kwargs):
            raise ValueError(f"synth_fn_kwargs must be None or one dict per batch "
                             f"({len(theta_fn_kwargs)} batches), got {synth_fn_kwargs!r:.80}")
        pairs = []
        for i, (t_kw, s_kw) in enumerate(zip(theta_fn_kwargs, synth_fn_kwargs)):
            s_kw = {} if s_kw is None else s_kw
            if not isinstance(t_kw, Mapping) or not isinstance(s_kw, Mapping):
                raise TypeError(f"batch {i}: theta_fn_kwargs and synth_fn_kwargs entries must be dicts")
            x = t_kw.get("x")
            if not torch.is_tensor(x) or x.ndim != 3 or not x.is_floating_point():
                raise ValueError(f"batch {i}: theta_fn_kwargs must hold the target audio 'x' as a float tensor "
                                 f"(batch, channels, samples), got {getattr(x, 'shape', x)!r}")
            pairs.append((dict(t_kw), dict(s_kw)))
        return pairs

    def _check_theta(self, theta: Any) -> Tensor:
        if not torch.is_tensor(theta) or not theta.is_floating_point():
            raise TypeError(f"theta_fn must return a floating-point tensor, got {type(theta).__name__}")
        if theta.ndim == 0 or theta.shape[-1] != self.n_theta:
            raise ValueError(f"theta_fn returned shape {tuple(theta.shape)}, but this loss has n_theta="
                             f"{self.n_theta}: expected (..., {self.n_theta}) (the theta layout's size, "
                             f"e.g. GraphSynth.n_theta)")
        if not theta.requires_grad:
            raise ValueError("theta_fn's output does not depend on params (it does not require grad)")
        return theta

    def _path_losses(self, x_hat: Tensor, x: Tensor, path_idx: int, copies: int) -> Tensor:
        """Sum over ``copies`` of the batch-mean distance of path ``path_idx``; x_hat is (copies * B, C, N)."""
        n = x.shape[-1]
        jtfs = self.jtfs_for(n, x_hat.device, x_hat.dtype)
        with torch.no_grad():
            target = jtfs.paths_coefficients(x.to(x_hat).reshape(-1, n), [path_idx])
        coefs = jtfs.paths_coefficients(x_hat.reshape(-1, n), [path_idx])
        log1p_eps = self.log1p_eps if self.use_rho_log1p else None
        dist = path_distance(coefs, target.repeat(copies, 1, 1, 1), self.p, log1p_eps)
        return dist.reshape(copies, -1).mean(dim=1).sum()

    def _theta_model(self, path_idx: int, synth_fn: Callable[..., Tensor], synth_kwargs: dict, x: Tensor,
                     theta0: Tensor, theta_hessian: str, hvp_chunk: Optional[int]) -> _ThetaModel:
        """Gradient and Hessian of path ``path_idx``'s loss with respect to theta at ``theta0``.

        The Hessian columns ``H t_k`` for all tangents ``t_k`` come from one
        double backward over a batch of copies ``theta0 + 0 * t_k``: the
        copies' losses are summed, so the gradient of copy k is that of the
        loss alone, and differentiating ``sum_k grad_k . t_k`` gives each
        ``H t_k`` in its own copy.
        """
        masks = _coordinate_masks(theta0)
        if theta_hessian == "auto":
            theta_hessian = "per_example" if synth_is_per_example(synth_fn, theta0, synth_kwargs) else "full"
            log.debug("path %d: theta Hessian computed %s", path_idx, theta_hessian)
        if theta_hessian == "full":
            tangents = torch.eye(theta0.numel(), dtype=theta0.dtype, device=theta0.device)
            tangents = tangents.reshape((theta0.numel(),) + tuple(theta0.shape))
        else:
            # Coordinate u of every example at once: exact when example b's
            # audio depends on theta row b only (then H is block diagonal).
            tangents = masks
        n_copies = tangents.shape[0]
        if hvp_chunk is None:
            hvp_chunk = max(1, HESSIAN_PASS_SAMPLES // max(1, x.numel()))
        columns, a = [], None
        for lo in range(0, n_copies, hvp_chunk):
            chunk = tangents[lo:lo + hvp_chunk]
            copies = theta0.detach().unsqueeze(0).repeat((chunk.shape[0],) + (1,) * theta0.ndim).requires_grad_()
            # One synth call per copy: the synth sees the batch it was written for.
            x_hat = torch.cat([self._check_audio(synth_fn(c, **synth_kwargs), x) for c in copies.unbind(0)])
            loss = self._path_losses(x_hat, x, path_idx, chunk.shape[0])
            (grads,) = torch.autograd.grad(loss, copies, create_graph=True)
            a = grads[0].detach()
            if grads.requires_grad:
                (hess,) = torch.autograd.grad((grads * chunk).sum(), copies, allow_unused=True, materialize_grads=True)
            else:  # the loss is linear in theta
                hess = torch.zeros_like(copies)
            columns.append(hess.detach())
        columns = torch.cat(columns)
        if theta_hessian == "full":
            hessian = columns.reshape(n_copies, -1).T  # row k of `columns` is H e_k, i.e. column k
        else:
            hessian = columns.reshape(n_copies, -1, n_copies).permute(1, 2, 0)  # (B, U, U)[b, :, u] = H_b e_u
        return _ThetaModel(theta0.detach(), a, hessian)

    @staticmethod
    def _check_audio(x_hat: Any, x: Tensor) -> Tensor:
        if not torch.is_tensor(x_hat) or x_hat.shape != x.shape:
            raise ValueError(f"synth_fn must return audio shaped like the target x {tuple(x.shape)}, "
                             f"got {tuple(getattr(x_hat, 'shape', ()))}")
        return x_hat

    def calc_theta_eigs(self, path_idx: int, theta_fn: Callable[..., Tensor], synth_fn: Callable[..., Tensor],
                        theta_fn_kwargs: Union[Mapping, Sequence[Mapping]], params: Sequence[Tensor],
                        synth_fn_kwargs=None, n_iter: int = 20, tol: float = 1e-4, seed: int = 0,
                        theta_hessian: str = "auto", hvp_chunk: Optional[int] = None,
                        param_groups: Optional[Sequence[Sequence[Tensor]]] = None) -> Tensor:
        r"""Largest eigenvalue of ``A_u = grad_w(s_{x,u,p}(w) grad_w E_{x,u}(w))`` for every u, one path.

        Over several batches the operator is the sum of the batches' operators
        (as the reference package does). The U power iterations run together.

        Args:
            path_idx: the path p.
            theta_fn, synth_fn, theta_fn_kwargs, synth_fn_kwargs: as for :meth:`warmup_lc_hvp`.
            params: the weights w (or the theta tensor itself).
            n_iter, tol, seed, theta_hessian, hvp_chunk: as for :meth:`warmup_lc_hvp`.
            param_groups: compute one row per group of tensors (default: one group, ``params``).

        Returns:
            ``(G, n_theta)`` signed eigenvalue estimates, one row per parameter group.

        Raises:
            ValueError / TypeError: for bad inputs (see :meth:`warmup_lc_hvp`).
        """
        path_idx = check_path_index(path_idx, self.n_paths, "path_idx")
        if theta_hessian not in THETA_HESSIANS:
            raise ValueError(f"theta_hessian must be one of {THETA_HESSIANS}, got {theta_hessian!r}")
        if hvp_chunk is not None and (isinstance(hvp_chunk, bool) or not isinstance(hvp_chunk, numbers.Integral)
                                      or hvp_chunk < 1):
            raise ValueError(f"hvp_chunk must be None or an integer >= 1, got {hvp_chunk!r}")
        batches = self._batches(theta_fn_kwargs, synth_fn_kwargs)
        params = list(params)
        groups = [params] if param_groups is None else [list(g) for g in param_groups]
        thetas, models = [], []
        for t_kw, s_kw in batches:
            theta = self._check_theta(theta_fn(**t_kw))
            thetas.append(theta)
            models.append(self._theta_model(path_idx, synth_fn, s_kw, t_kw["x"], theta.detach(),
                                            theta_hessian, hvp_chunk))
        rows = []
        for g, group in enumerate(groups):
            # g_u(w) = J^T (e_u * grad L(theta)) for all u and batches; their
            # graphs (through the model's H, and the encoder) stay for the
            # products of the power iteration.
            coord_grads = []
            for theta, model in zip(thetas, models):
                weighted = model.grad(theta).unsqueeze(0) * _coordinate_masks(theta)
                coord_grads.append(_flat_grads(theta, group, weighted, create_graph=True))
            dim = coord_grads[0].shape[1]

            def matvec(v: Tensor, rows_: Tensor) -> Tensor:
                out = torch.zeros_like(v)
                selector = torch.eye(len(rows_), dtype=v.dtype, device=v.device)
                for grads in coord_grads:
                    if grads.requires_grad:  # otherwise g_u does not depend on w: A_u = 0
                        out += _flat_grads((grads[rows_] * v).sum(dim=1), group, selector, create_graph=False)
                return out

            generator = torch.Generator().manual_seed(int(seed) + 1_000_003 * path_idx + 7_919 * g)
            v0 = torch.rand(self.n_theta, dim, generator=generator, dtype=torch.float64)
            v0 = v0.to(dtype=coord_grads[0].dtype, device=coord_grads[0].device)
            eigs, steps = power_iteration(matvec, v0, n_iter=n_iter, tol=tol)
            log.debug("path %d, group %d: %d power-iteration steps, eigenvalues %s", path_idx, g, steps,
                      eigs.tolist())
            rows.append(eigs)
        return torch.stack(rows).float()

    def _warmup_config(self, agg: str, n_iter: int, tol: float, seed: int, theta_hessian: str,
                       groups: List[List[Tensor]], theta_labels: Optional[List[str]]) -> dict:
        """What the values in a warmup directory depend on (the data aside)."""
        return {
            "format": MANIFEST_FORMAT, "n_paths": self.n_paths,
            "path_keys": [list(map(int, k)) for k in self.scrapl_keys],
            "jtfs": dict(self.jtfs_config), "n_theta": self.n_theta, "p": self.p,
            "use_rho_log1p": bool(self.use_rho_log1p), "log1p_eps": self.log1p_eps,
            "agg": agg, "n_iter": int(n_iter), "tol": float(tol), "seed": int(seed),
            "theta_hessian": theta_hessian, "param_shapes": [_param_shapes(g) for g in groups],
            "theta_labels": theta_labels,
        }

    def _open_save_dir(self, save_dir: str, config: dict) -> None:
        """Create ``save_dir`` with its manifest, or check that its manifest matches ``config``."""
        os.makedirs(save_dir, exist_ok=True)
        manifest = os.path.join(save_dir, MANIFEST_NAME)
        expected = json.loads(json.dumps(config))
        if os.path.isfile(manifest):
            with open(manifest) as f:
                found = json.load(f)
            differ = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            if differ:
                raise ValueError(f"warmup directory {save_dir!r} was written for another configuration or path "
                                 f"set (differs in: {', '.join(differ)}); use another save_dir or remove it")
            return
        if any(name.startswith("vals_") for name in os.listdir(save_dir)):
            raise ValueError(f"warmup directory {save_dir!r} holds values but no {MANIFEST_NAME}: it was not "
                             f"written by this warmup; use another save_dir")
        # Several ranks may get here at once: they write the same content, atomically.
        _atomic_save(expected, manifest)

    def warmup_lc_hvp(self, theta_fn: Callable[..., Tensor], synth_fn: Callable[..., Tensor],
                      theta_fn_kwargs: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]],
                      params: Sequence[Tensor], synth_fn_kwargs=None, start_path_idx: int = 0,
                      end_path_idx: Optional[int] = None, save_dir: Optional[str] = "scrapl_warmup",
                      n_iter: int = 20, agg: str = "none", force_multibatch: bool = False, *,
                      tol: float = 1e-4, seed: int = 0, theta_hessian: str = "auto",
                      hvp_chunk: Optional[int] = None, distributed: Optional[bool] = None,
                      progress: bool = True) -> Dict[int, Tensor]:
        r"""theta-IS warmup: path probabilities from the local curvature of each path's loss.

        For each path p in ``[start_path_idx, end_path_idx)`` and each theta
        coordinate u,

            C[u, p] = |lambda_max( grad_w( s_{x,u,p}(w) grad_w E_{x,u}(w) ) )|   (paper, eq. 12)

        by power iteration, with ``s_{x,u,p} = dL_p/dtheta_u`` and
        ``L_p = mean_b || S_p synth(theta)_b - S_p x_b ||_p`` (the loss's ``p``
        and log1p settings). The values update ``probs`` through
        :meth:`update_prob` (eq. 10 with the ``min_prob_frac`` floor).

        Theta is ``theta_fn(**kwargs)``, of shape ``(..., n_theta)`` (e.g.
        ``(B, n_theta)`` laid out by a :class:`~scrapl_graph.graph.ThetaLayout`,
        whose size must equal the loss's ``n_theta``, or a flat ``(n_theta,)``).
        For direct optimization of graph parameters, let ``theta_fn`` return
        the parameter tensor and pass it as ``params``.

        With ``save_dir``, each path's values ``(G, n_theta)`` are written
        atomically to ``vals_{path_idx}.pt`` next to a manifest
        (``warmup.json``) of the configuration; a later call skips the paths
        already there, so an interrupted warmup resumes. When all paths are
        done, ``probs.pt`` holds the probabilities.

        Under ``torch.distributed`` (e.g. launched by torchrun) the path range
        is split into contiguous disjoint shards, one per rank, and the values
        are gathered so that every rank ends with the probabilities of a
        single-process run.

        Args:
            theta_fn: encoder, ``theta_fn(**theta_fn_kwargs[i])`` -> theta; must be deterministic here.
            synth_fn: synth, ``synth_fn(theta, **synth_fn_kwargs[i])`` -> audio ``(B, C, N)``; deterministic.
            theta_fn_kwargs: one batch (dict) or a list of batches; each holds the
                target audio ``"x"`` ``(B, C, N)``. Over several batches the
                operators of the batches are summed.
            params: the weights w that theta depends on.
            synth_fn_kwargs: extra synth arguments, one dict per batch (or a dict for one batch).
            start_path_idx, end_path_idx: the path range (default: all paths).
            save_dir: directory for the values, or None to keep nothing.
            n_iter: maximum power-iteration steps.
            agg: ``"none"``: one eigenvalue over all params; ``"mean"``,
                ``"max"``, ``"med"``: one per parameter tensor, then aggregated.
            force_multibatch: accepted for compatibility; one batch and a list
                of one batch give the same result here.
            tol: relative change of the eigenvalue estimate at which a power iteration stops.
            seed: seed of the power iterations' start vectors (per path, so shards agree).
            theta_hessian: ``"full"``: the theta Hessian over all ``B n_theta``
                entries (any synth); ``"per_example"``: only its ``n_theta x n_theta``
                diagonal blocks, exact and ``B`` times cheaper when example b's
                audio depends on theta row b only; ``"auto"``: ``"per_example"``
                when the synth's Jacobian at theta is block diagonal
                (:func:`synth_is_per_example`), else ``"full"``.
            hvp_chunk: tangent directions per double-backward pass through the
                JTFS (default: bounded by memory, about 4M samples per pass).
            distributed: shard over ``torch.distributed`` ranks (default: when a
                process group with more than one rank is initialized).
            progress: show a progress bar over the paths.

        Returns:
            ``{path_idx: (G, n_theta) values}`` for the whole range (all shards).

        Raises:
            ValueError: for bad ranges, options, or inputs; for a ``save_dir`` written for
                another configuration; if probabilities were loaded from a file or
                parameters are attached.
            TypeError: for ill-typed inputs.
        """
        if agg not in AGGREGATIONS:
            raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
        if theta_hessian not in THETA_HESSIANS:
            raise ValueError(f"theta_hessian must be one of {THETA_HESSIANS}, got {theta_hessian!r}")
        if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
            raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
        if not (isinstance(tol, numbers.Real) and tol >= 0):
            raise ValueError(f"tol must be a non-negative number, got {tol!r}")
        end_path_idx = self.n_paths if end_path_idx is None else end_path_idx
        if not (isinstance(start_path_idx, numbers.Integral) and isinstance(end_path_idx, numbers.Integral)
                and 0 <= start_path_idx < end_path_idx <= self.n_paths):
            raise ValueError(f"need 0 <= start_path_idx < end_path_idx <= n_paths={self.n_paths}, got "
                             f"[{start_path_idx}, {end_path_idx})")
        if self.loaded_probs_path is not None:
            raise ValueError(f"probabilities were loaded from {self.loaded_probs_path!r}; call clear() before a warmup")
        if getattr(self, "attached_params", None):
            raise ValueError("parameters are attached (attach_params): detach them (attach_params([])) "
                             "before the warmup, whose gradients must not go through P-Adam/P-SAGA")
        params = list(params)
        if not params:
            raise ValueError("params must not be empty")
        for i, q in enumerate(params):
            if not torch.is_tensor(q) or not q.requires_grad:
                raise TypeError(f"params[{i}] must be a tensor that requires grad")
        batches = self._batches(theta_fn_kwargs, synth_fn_kwargs)
        synth_n_theta = getattr(synth_fn, "n_theta", None)
        if isinstance(synth_n_theta, numbers.Integral) and synth_n_theta != self.n_theta:
            raise ValueError(f"synth_fn lays out n_theta={synth_n_theta} parameters but this loss has "
                             f"n_theta={self.n_theta}")
        layout = getattr(synth_fn, "layout", None)
        theta_labels = layout.labels() if hasattr(layout, "labels") else None

        self.check_is_deterministic(theta_fn, batches[0][0], synth_fn, batches[0][1])
        groups = [params] if agg == "none" else [[q] for q in params]
        if theta_hessian == "auto":
            # Decided once for the whole warmup rather than per path: the probe does not depend on the path.
            per_example = all(synth_is_per_example(synth_fn, self._check_theta(theta_fn(**t_kw)), s_kw)
                              for t_kw, s_kw in batches)
            theta_hessian = "per_example" if per_example else "full"
            log.info("theta Hessian: %s", theta_hessian)
        rank, world = _distributed_world(distributed)
        mine = _shard(start_path_idx, end_path_idx, rank, world)
        log.info("theta-IS warmup: paths [%d, %d) (%d on rank %d of %d), %d parameter group(s), %d batch(es), "
                 "n_iter=%d, tol=%g, agg=%s, multibatch=%s", start_path_idx, end_path_idx, len(mine), rank, world,
                 len(groups), len(batches), n_iter, tol, agg, force_multibatch or len(batches) > 1)
        if save_dir is not None:
            config = self._warmup_config(agg, n_iter, tol, seed, theta_hessian, groups, theta_labels)
            self._open_save_dir(save_dir, config)

        from tqdm.auto import tqdm

        results: Dict[int, Tensor] = {}
        for path_idx in tqdm(mine, desc="theta-IS warmup", unit="path", disable=not progress, leave=False):
            file = None if save_dir is None else _vals_path(save_dir, path_idx)
            if file is not None and os.path.isfile(file):
                vals = torch.load(file, map_location="cpu")
                log.info("path %d: values found in %s, skipped", path_idx, file)
            else:
                eigs = self.calc_theta_eigs(path_idx, theta_fn, synth_fn, [b[0] for b in batches], params,
                                            [b[1] for b in batches], n_iter=n_iter, tol=tol, seed=seed,
                                            theta_hessian=theta_hessian, hvp_chunk=hvp_chunk, param_groups=groups)
                vals = eigs.abs().detach().cpu()
                if file is not None:
                    _atomic_save(vals, file)
                log.info("path %d: values %s", path_idx, vals.tolist())
            results[path_idx] = vals
        if world > 1:
            gathered: List[Optional[dict]] = [None] * world
            torch.distributed.all_gather_object(gathered, results)
            results = {k: v for part in gathered for k, v in part.items()}
        for path_idx in range(start_path_idx, end_path_idx):  # path order, as a single process would
            self._apply_vals(results[path_idx], path_idx, agg)
        if save_dir is not None and start_path_idx == 0 and end_path_idx == self.n_paths and rank == 0:
            _atomic_save(self.probs.detach().cpu(), os.path.join(save_dir, "probs.pt"))
            log.info("theta-IS warmup done; probabilities saved to %s", os.path.join(save_dir, "probs.pt"))
        return results

    def _apply_vals(self, vals: Tensor, path_idx: int, agg: str) -> None:
        vals = torch.as_tensor(vals)
        if vals.ndim != 2 or vals.shape[1] != self.n_theta:
            raise ValueError(f"values of path {path_idx} must have shape (groups, {self.n_theta}), "
                             f"got {tuple(vals.shape)}")
        for theta_idx, val in enumerate(aggregate_vals(vals, agg)):
            self.update_prob(path_idx, val, theta_idx)

    def load_probs_from_warmup_dir(self, warmup_dir: str, agg: str = "none") -> None:
        """Set ``probs`` from the values of a (possibly sharded) warmup directory.

        Clears the loss first (see ``clear()``). Paths without a values file
        keep their share as in :meth:`update_prob`; they are named in a warning.
        Directories of the reference package (no manifest) are read as well.

        Args:
            warmup_dir: a ``save_dir`` of :meth:`warmup_lc_hvp`.
            agg: how to combine per-parameter-group values (see :func:`aggregate_vals`).

        Raises:
            ValueError: if the directory does not exist, holds no values, was
                written for another path set or ``n_theta``, or ``agg`` does not fit.
        """
        if agg not in AGGREGATIONS:
            raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
        if not os.path.isdir(warmup_dir):
            raise ValueError(f"warmup directory {warmup_dir!r} does not exist")
        manifest = os.path.join(warmup_dir, MANIFEST_NAME)
        if os.path.isfile(manifest):
            with open(manifest) as f:
                found = json.load(f)
            keys = [list(map(int, k)) for k in self.scrapl_keys]
            if found.get("path_keys") != keys or found.get("n_theta") != self.n_theta:
                raise ValueError(f"warmup directory {warmup_dir!r} was written for another path set or n_theta "
                                 f"({found.get('n_paths')} paths, n_theta={found.get('n_theta')}; this loss: "
                                 f"{self.n_paths} paths, n_theta={self.n_theta})")
        else:
            log.warning("warmup directory %s has no %s; assuming it matches this loss", warmup_dir, MANIFEST_NAME)
        present = [i for i in range(self.n_paths) if os.path.isfile(_vals_path(warmup_dir, i))]
        if not present:
            raise ValueError(f"warmup directory {warmup_dir!r} holds no vals_<path>.pt files")
        self.clear()
        for path_idx in present:
            self._apply_vals(torch.load(_vals_path(warmup_dir, path_idx), map_location="cpu"), path_idx, agg)
        missing = sorted(set(range(self.n_paths)) - set(present))
        if missing:
            log.warning("warmup directory %s is partial: no values for %d of %d paths: %s", warmup_dir,
                        len(missing), self.n_paths, missing)
        self.loaded_probs_path = str(warmup_dir)
        log.info("Loaded probabilities from warmup directory %s (min %.6f, max %.6f)", os.path.abspath(warmup_dir),
                 self.probs.min().item(), self.probs.max().item())

    def plot_probs(self, path: str, sample_rate: float, **kwargs) -> str:
        """Write a PNG of the path probabilities over the rate-scale plane; see :func:`scrapl_graph.plotting.plot_probs`."""
        from .plotting import plot_probs

        return plot_probs(self, path, sample_rate=sample_rate, **kwargs)
