"""theta-IS for a SCRAPL loss: its warmup, importance values and warmup directories.

Functions of a :class:`~scrapl_graph.SCRAPLLoss` (``loss``), behind its
methods ``warmup_lc_hvp``, ``calc_theta_eigs`` and
``load_probs_from_warmup_dir``. They compose the pure pieces of
:mod:`scrapl_graph.scrapl` (curvature, importance table, warmup loop and
store) with the loss's path distance.
"""
from __future__ import annotations

import logging
import numbers
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from ..jtfs.layout import check_path_index
from ..scrapl import curvature
from ..scrapl import warmup_store as store
from ..scrapl.importance import AGGREGATIONS, aggregate_vals
from ..scrapl.warmup import check_path_range, run_warmup
from .distance import compared, path_distance

log = logging.getLogger(__name__)

Batches = Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]


def path_loss(loss) -> curvature.PathLoss:
    """The loss's distance of one path (either order), summed over ``copies`` of the batch
    (see :data:`curvature.PathLoss`)."""

    def value(x_hat: Tensor, x: Tensor, path_idx: int, copies: int) -> Tensor:
        n = x.shape[-1]
        jtfs = loss.jtfs_for(n, dtype=x_hat.dtype)
        with torch.no_grad():
            (target,) = loss.path_set.coefficients(jtfs, x.to(x_hat).reshape(-1, n), [path_idx])
        (coefs,) = loss.path_set.coefficients(jtfs, x_hat.reshape(-1, n), [path_idx])
        log1p_eps = loss.log1p_eps if loss.use_rho_log1p else None
        compare = loss.path_set.compare
        target = compared(target, compare).repeat(copies, 1, 1, 1)
        dist = path_distance(compared(coefs, compare, copies), target, loss.p, log1p_eps)
        return dist.reshape(copies, -1).mean(dim=1).sum()

    return value


def calc_theta_eigs(loss, path_idx: int, theta_fn: Callable[..., Tensor], synth_fn: Callable[..., Tensor],
                    theta_fn_kwargs: Batches, params: Sequence[Tensor], synth_fn_kwargs=None, n_iter: int = 20,
                    tol: float = 1e-4, seed: int = 0, theta_hessian: str = "auto", hvp_chunk: Optional[int] = None,
                    param_groups: Optional[Sequence[Sequence[Tensor]]] = None) -> Tensor:
    """``(G, n_theta)`` signed largest eigenvalues of path ``path_idx`` (see :func:`curvature.theta_eigs`)."""
    path_idx = check_path_index(path_idx, loss.n_paths, "path_idx")
    batches = curvature.normalize_batches(theta_fn_kwargs, synth_fn_kwargs)
    groups = [list(params)] if param_groups is None else [list(g) for g in param_groups]
    return curvature.theta_eigs(path_loss(loss), path_idx, loss.n_theta, theta_fn, synth_fn, batches, groups,
                                n_iter=n_iter, tol=tol, seed=seed, theta_hessian=theta_hessian, hvp_chunk=hvp_chunk)


def _check_options(loss, agg: str, n_iter: Any, tol: Any, theta_hessian: str, params: Sequence[Tensor]) -> List[Tensor]:
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
    if theta_hessian not in curvature.THETA_HESSIANS:
        raise ValueError(f"theta_hessian must be one of {curvature.THETA_HESSIANS}, got {theta_hessian!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1:
        raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    if loss.loaded_probs_path is not None:
        raise ValueError(f"probabilities were loaded from {loss.loaded_probs_path!r}; call clear() before a warmup")
    if loss.attached_params:
        raise ValueError("parameters are attached (attach_params): detach them (attach_params([])) "
                         "before the warmup, whose gradients must not go through P-Adam/P-SAGA")
    params = list(params)
    if not params:
        raise ValueError("params must not be empty")
    for i, q in enumerate(params):
        if not torch.is_tensor(q) or not q.requires_grad:
            raise TypeError(f"params[{i}] must be a tensor that requires grad")
    return params


def _manifest(loss, agg: str, n_iter: int, tol: float, seed: int, theta_hessian: str, groups, synth_fn) -> dict:
    """What the values in a warmup directory depend on (the data aside)."""
    layout = getattr(synth_fn, "layout", None)
    return {"format": store.MANIFEST_FORMAT, "n_paths": loss.n_paths, **loss.identity,
            "n_theta": loss.n_theta, "p": loss.p, "use_rho_log1p": bool(loss.use_rho_log1p),
            "log1p_eps": loss.log1p_eps, "agg": agg, "n_iter": int(n_iter), "tol": float(tol), "seed": int(seed),
            "theta_hessian": theta_hessian, "param_shapes": [[list(q.shape) for q in g] for g in groups],
            "theta_labels": layout.labels() if hasattr(layout, "labels") else None}


def warmup_lc_hvp(loss, theta_fn, synth_fn, theta_fn_kwargs: Batches, params, synth_fn_kwargs=None,
                  start_path_idx: int = 0, end_path_idx: Optional[int] = None,
                  save_dir: Optional[str] = "scrapl_warmup", n_iter: int = 20, agg: str = "none",
                  force_multibatch: bool = False, *, tol: float = 1e-4, seed: int = 0, theta_hessian: str = "auto",
                  hvp_chunk: Optional[int] = None, distributed: Optional[bool] = None,
                  progress: bool = True) -> Dict[int, Tensor]:
    """The warmup of :meth:`scrapl_graph.SCRAPLLoss.warmup_lc_hvp` (see there)."""
    params = _check_options(loss, agg, n_iter, tol, theta_hessian, params)
    paths = check_path_range(start_path_idx, end_path_idx, loss.n_paths)
    batches = curvature.normalize_batches(theta_fn_kwargs, synth_fn_kwargs)
    synth_n_theta = getattr(synth_fn, "n_theta", None)
    if isinstance(synth_n_theta, numbers.Integral) and synth_n_theta != loss.n_theta:
        raise ValueError(f"synth_fn lays out n_theta={synth_n_theta} parameters but this loss has "
                         f"n_theta={loss.n_theta}")
    curvature.check_is_deterministic(theta_fn, batches[0][0], synth_fn, batches[0][1])
    groups = [params] if agg == "none" else [[q] for q in params]
    if theta_hessian == "auto":
        # Decided once for the whole warmup: the probe does not depend on the path.
        per_example = all(curvature.synth_is_per_example(synth_fn, curvature.check_theta(theta_fn(**t_kw),
                                                                                        loss.n_theta), s_kw)
                          for t_kw, s_kw in batches)
        theta_hessian = "per_example" if per_example else "full"
    log.info("theta-IS warmup: %d parameter group(s), %d batch(es), n_iter=%d, tol=%g, agg=%s, theta Hessian %s, "
             "multibatch=%s", len(groups), len(batches), n_iter, tol, agg, theta_hessian,
             force_multibatch or len(batches) > 1)

    def path_values(path_idx: int) -> Tensor:
        return loss.calc_theta_eigs(path_idx, theta_fn, synth_fn, [b[0] for b in batches], params,
                                    [b[1] for b in batches], n_iter=n_iter, tol=tol, seed=seed,
                                    theta_hessian=theta_hessian, hvp_chunk=hvp_chunk, param_groups=groups)

    manifest = _manifest(loss, agg, n_iter, tol, seed, theta_hessian, groups, synth_fn)
    results = run_warmup(path_values, paths, save_dir, manifest, distributed, progress)
    for path_idx, vals in results.items():
        apply_vals(loss, vals, path_idx, agg)
    rank, _ = store.distributed_world(distributed)
    if save_dir is not None and len(paths) == loss.n_paths and rank == 0:
        loss.save_probs(os.path.join(save_dir, "probs.pt"))
        log.info("theta-IS warmup done; probabilities saved to %s", os.path.join(save_dir, "probs.pt"))
    return results


def apply_vals(loss, vals: Tensor, path_idx: int, agg: str) -> None:
    """Record a path's ``(groups, n_theta)`` values in the loss's probabilities (eq. 10)."""
    vals = torch.as_tensor(vals)
    if vals.ndim != 2 or vals.shape[1] != loss.n_theta:
        raise ValueError(f"values of path {path_idx} must have shape (groups, {loss.n_theta}), "
                         f"got {tuple(vals.shape)}")
    for theta_idx, val in enumerate(aggregate_vals(vals, agg)):
        loss.update_prob(path_idx, val, theta_idx)


def load_probs_from_warmup_dir(loss, warmup_dir: str, agg: str = "none") -> None:
    """Set the loss's probabilities from the values of a (possibly sharded or partial) warmup directory."""
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
    store.check_warmup_dir(warmup_dir, loss.identity, loss.n_theta)
    present = store.present_paths(warmup_dir, loss.n_paths)
    if not present:
        raise ValueError(f"warmup directory {warmup_dir!r} holds no vals_<path>.pt files")
    loss.clear()
    for path_idx in present:
        apply_vals(loss, store.load_vals(warmup_dir, path_idx), path_idx, agg)
    missing = sorted(set(range(loss.n_paths)) - set(present))
    if missing:
        log.warning("warmup directory %s is partial: no values for %d of %d paths: %s", warmup_dir,
                    len(missing), loss.n_paths, missing)
    loss.loaded_probs_path = str(warmup_dir)
    log.info("Loaded probabilities from warmup directory %s (min %.6f, max %.6f)", os.path.abspath(warmup_dir),
             loss.probs.min().item(), loss.probs.max().item())
