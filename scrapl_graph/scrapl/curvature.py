r"""theta-IS curvature: the importance ``C[u, p]`` of path p for synth parameter u (paper, eqs. 11-12).

With an encoder ``theta = E_x(w)`` and the path loss ``L_p``, the paper defines

    s_{x,u,p}(w) = dL_p/dtheta_u (E_x(w)),
    C[u, p] = E_x[ lambda_max( grad_w( s_{x,u,p}(w) grad_w E_{x,u}(w) ) ) ],

the largest eigenvalue magnitude of the Jacobian ``A_u`` of the vector field
``g_u(w) = J(w)^T (e_u * grad_theta L_p)`` (J the encoder's Jacobian, e_u
selecting coordinate u of every example), found by power iteration on the
products ``A_u^T v = grad_w(g_u(w) . v)``.

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

Everything here is a pure function of its arguments: the path's loss comes in
as a callable ``path_loss(x_hat, x, path_idx, copies)``.
"""
from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..checks import wants_value_check

log = logging.getLogger(__name__)

THETA_HESSIANS = ("auto", "full", "per_example")
#: Default bound on the samples (copies x batch x channels x length) that one
#: double-backward pass of the theta Hessian pushes through the JTFS.
HESSIAN_PASS_SAMPLES = 2 ** 22

#: ``path_loss(x_hat, x, path_idx, copies)``: x_hat is ``(copies * B, C, N)``,
#: x the target ``(B, C, N)``; returns the sum over copies of the batch-mean
#: distance of path ``path_idx``.
PathLoss = Callable[[Tensor, Tensor, int, int], Tensor]


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
    # Reading values on the host (the nonzero check, the early stop) waits for
    # the device: on CUDA, unless asked (see scrapl_graph.checks), every row
    # runs the n_iter steps and a converged row is frozen in place instead.
    reads = wants_value_check(v0)
    if reads and not bool((norms > 0).all()):
        raise ValueError("every start vector must be nonzero")
    v = v0 / norms
    eigs = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
    previous = torch.zeros_like(eigs)
    active = torch.arange(v.shape[0], device=v.device)
    frozen = torch.zeros(v.shape[0], dtype=torch.bool, device=v.device)
    steps = 0
    while (not reads or active.numel()) and steps < n_iter:
        av = matvec(v[active], active).detach()
        steps += 1
        estimate = (v[active] * av).sum(dim=1).double()
        av_norm = av.norm(dim=1, keepdim=True)
        null = av_norm[:, 0] == 0
        estimate = torch.where(null, torch.zeros_like(estimate), estimate)
        # A row in the operator's null space has converged (to 0): keep its vector.
        step = torch.where(null[:, None], v[active], av / av_norm.clamp_min(torch.finfo(av.dtype).tiny))
        change = (estimate - previous[active]).abs()
        done = null | (change < tol * estimate.abs())
        if reads:
            eigs[active], v[active], previous[active] = estimate, step, estimate
            active = active[~done]
        else:
            eigs = torch.where(frozen, eigs, estimate)
            v = torch.where(frozen[:, None], v, step)
            previous = eigs
            frozen = frozen | done
    return eigs, steps
    return eigs, steps


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


def coordinate_masks(theta: Tensor) -> Tensor:
    """``(U, *theta.shape)``: mask u selects coordinate u (last axis) of every example."""
    n_theta = theta.shape[-1]
    eye = torch.eye(n_theta, dtype=theta.dtype, device=theta.device)
    return eye.reshape((n_theta,) + (1,) * (theta.ndim - 1) + (n_theta,)).expand((n_theta,) + tuple(theta.shape))


def flat_grads(outputs: Tensor, inputs: Sequence[Tensor], grad_outputs: Tensor, create_graph: bool) -> Tensor:
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


def normalize_batches(theta_fn_kwargs, synth_fn_kwargs) -> List[Tuple[dict, dict]]:
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


def check_theta(theta: Any, n_theta: int) -> Tensor:
    """The encoder's output: a floating-point tensor ``(..., n_theta)`` that depends on the weights."""
    if not torch.is_tensor(theta) or not theta.is_floating_point():
        raise TypeError(f"theta_fn must return a floating-point tensor, got {type(theta).__name__}")
    if theta.ndim == 0 or theta.shape[-1] != n_theta:
        raise ValueError(f"theta_fn returned shape {tuple(theta.shape)}, but this loss has n_theta="
                         f"{n_theta}: expected (..., {n_theta}) (the theta layout's size, "
                         f"e.g. GraphSynth.n_theta)")
    if not theta.requires_grad:
        raise ValueError("theta_fn's output does not depend on params (it does not require grad)")
    return theta


def _check_audio(x_hat: Any, x: Tensor) -> Tensor:
    if not torch.is_tensor(x_hat) or x_hat.shape != x.shape:
        raise ValueError(f"synth_fn must return audio shaped like the target x {tuple(x.shape)}, "
                         f"got {tuple(getattr(x_hat, 'shape', ()))}")
    return x_hat


@dataclass
class ThetaModel:
    """The exact second-order model of one path's loss around theta_0 (one batch).

    ``grad(theta) = a + H (theta - theta_0)``, with ``H`` full ``(n, n)`` over
    the ``n = B U`` flattened entries, or per example ``(B, U, U)``.
    """

    theta0: Tensor
    a: Tensor
    hessian: Tensor

    def grad(self, theta: Tensor) -> Tensor:
        delta = theta - self.theta0
        if self.hessian.ndim == 2:
            return self.a + (self.hessian @ delta.reshape(-1)).reshape(theta.shape)
        flat = delta.reshape(-1, delta.shape[-1])
        return self.a + torch.einsum("buv,bv->bu", self.hessian, flat).reshape(theta.shape)


def _tangents(theta0: Tensor, theta_hessian: str) -> Tensor:
    if theta_hessian == "full":
        eye = torch.eye(theta0.numel(), dtype=theta0.dtype, device=theta0.device)
        return eye.reshape((theta0.numel(),) + tuple(theta0.shape))
    # Coordinate u of every example at once: exact when example b's audio
    # depends on theta row b only (then H is block diagonal).
    return coordinate_masks(theta0)


def theta_model(path_loss: PathLoss, path_idx: int, synth_fn: Callable[..., Tensor], synth_kwargs: Mapping,
                x: Tensor, theta0: Tensor, theta_hessian: str = "full", hvp_chunk: Optional[int] = None) -> ThetaModel:
    """Gradient and Hessian of path ``path_idx``'s loss with respect to theta at ``theta0``.

    The Hessian columns ``H t_k`` for all tangents ``t_k`` come from one
    double backward over a batch of copies ``theta0 + 0 * t_k``: the copies'
    losses are summed, so the gradient of copy k is that of the loss alone,
    and differentiating ``sum_k grad_k . t_k`` gives each ``H t_k`` in its own copy.
    """
    if theta_hessian == "auto":
        # Telling a per-example synth apart reads values; without reads "full" is exact for every synth.
        per_example = wants_value_check(theta0) and synth_is_per_example(synth_fn, theta0, synth_kwargs)
        theta_hessian = "per_example" if per_example else "full"
    tangents = _tangents(theta0, theta_hessian)
    n_copies = tangents.shape[0]
    if hvp_chunk is None:
        hvp_chunk = max(1, HESSIAN_PASS_SAMPLES // max(1, x.numel()))
    columns, a = [], None
    for lo in range(0, n_copies, hvp_chunk):
        chunk = tangents[lo:lo + hvp_chunk]
        copies = theta0.detach().unsqueeze(0).repeat((chunk.shape[0],) + (1,) * theta0.ndim).requires_grad_()
        # One synth call per copy: the synth sees the batch it was written for.
        x_hat = torch.cat([_check_audio(synth_fn(c, **synth_kwargs), x) for c in copies.unbind(0)])
        loss = path_loss(x_hat, x, path_idx, chunk.shape[0])
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
    return ThetaModel(theta0.detach(), a, hessian)


def _group_eigs(thetas: Sequence[Tensor], models: Sequence[ThetaModel], group: Sequence[Tensor], n_theta: int,
                n_iter: int, tol: float, generator: torch.Generator) -> Tuple[Tensor, int]:
    """Power iterations of the U operators ``A_u`` (summed over batches) for one parameter group."""
    # g_u(w) = J^T (e_u * grad L(theta)) for all u and batches; their graphs
    # (through the model's H, and the encoder) stay for the products.
    coord_grads = [flat_grads(theta, group, model.grad(theta).unsqueeze(0) * coordinate_masks(theta),
                              create_graph=True) for theta, model in zip(thetas, models)]

    def matvec(v: Tensor, rows: Tensor) -> Tensor:
        out = torch.zeros_like(v)
        selector = torch.eye(len(rows), dtype=v.dtype, device=v.device)
        for grads in coord_grads:
            if grads.requires_grad:  # otherwise g_u does not depend on w: A_u = 0
                out += flat_grads((grads[rows] * v).sum(dim=1), group, selector, create_graph=False)
        return out

    v0 = torch.rand(n_theta, coord_grads[0].shape[1], generator=generator, dtype=torch.float64)
    return power_iteration(matvec, v0.to(dtype=coord_grads[0].dtype, device=coord_grads[0].device),
                           n_iter=n_iter, tol=tol)


def theta_eigs(path_loss: PathLoss, path_idx: int, n_theta: int, theta_fn: Callable[..., Tensor],
               synth_fn: Callable[..., Tensor], batches: Sequence[Tuple[Mapping, Mapping]],
               param_groups: Sequence[Sequence[Tensor]], n_iter: int = 20, tol: float = 1e-4, seed: int = 0,
               theta_hessian: str = "auto", hvp_chunk: Optional[int] = None) -> Tensor:
    r"""Largest eigenvalue of ``A_u = grad_w(s_{x,u,p}(w) grad_w E_{x,u}(w))`` for every u, one path.

    Over several batches the operator is the sum of the batches' operators
    (as the reference package does). The U power iterations run together.

    Args:
        path_loss: the path's loss (see :data:`PathLoss`).
        path_idx: the path p.
        n_theta: U.
        theta_fn, synth_fn: encoder ``theta_fn(**theta_kwargs)`` and synth ``synth_fn(theta, **synth_kwargs)``.
        batches: ``(theta_kwargs, synth_kwargs)`` pairs (see :func:`normalize_batches`).
        param_groups: one row of the result per group of weight tensors.
        n_iter, tol: power-iteration limits; seed: of its start vectors (per path and group).
        theta_hessian: ``"full"``, ``"per_example"`` or ``"auto"``; hvp_chunk: tangents per pass.

    Returns:
        ``(G, n_theta)`` signed eigenvalue estimates, one row per parameter group.
    """
    if theta_hessian not in THETA_HESSIANS:
        raise ValueError(f"theta_hessian must be one of {THETA_HESSIANS}, got {theta_hessian!r}")
    if hvp_chunk is not None and (isinstance(hvp_chunk, bool) or not isinstance(hvp_chunk, numbers.Integral)
                                  or hvp_chunk < 1):
        raise ValueError(f"hvp_chunk must be None or an integer >= 1, got {hvp_chunk!r}")
    thetas, models = [], []
    for t_kw, s_kw in batches:
        theta = check_theta(theta_fn(**t_kw), n_theta)
        thetas.append(theta)
        models.append(theta_model(path_loss, path_idx, synth_fn, s_kw, t_kw["x"], theta.detach(),
                                  theta_hessian, hvp_chunk))
    rows = []
    for g, group in enumerate(param_groups):
        generator = torch.Generator().manual_seed(int(seed) + 1_000_003 * path_idx + 7_919 * g)
        eigs, steps = _group_eigs(thetas, models, list(group), n_theta, n_iter, tol, generator)
        if log.isEnabledFor(logging.DEBUG):  # tolist() reads the device
            log.debug("path %d, group %d: %d power-iteration steps, eigenvalues %s", path_idx, g, steps, eigs.tolist())
        rows.append(eigs)
    return torch.stack(rows).float()
