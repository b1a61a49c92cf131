r"""theta-IS curvature of every path on the drum decay task, beside the per-path gradients.

For direct optimization of the synth parameters (the "encoder" returns theta
itself) and a synth whose example b depends on theta row b only (DrumSynth),
the operator of the theta-IS warmup (:mod:`scrapl_graph.scrapl.curvature`),

    A_u v = grad_theta( (e_u * grad_theta L_p) . v ) = H (e_u * v),

is block diagonal over the examples with blocks ``H_b e_u e_u^T`` of rank one,
whose only nonzero eigenvalue is ``H_b[u, u]``. So the curvature the warmup
finds is

    C[u, p] = max_b |d^2 L_p / d theta_{b,u}^2|,

the largest diagonal entry of the per-example Hessian of path p's loss over the
examples (the warmup's power iteration reaches it when it converges). The
``U`` Hessian columns come from one double backward over ``U`` copies of the
batch (:func:`~scrapl_graph.scrapl.curvature.theta_model`, ``"per_example"``),
so a path costs about four plain forward/backward passes of ``U`` batches and
the power iteration, whose products never reach the JTFS, is left out.

Theta-IS (eq. 10) normalises each parameter's curvature over the paths,
``C[u, p] / sum_p' C[u, p']``, and averages over u: :func:`summarize_curvature`
says which paths that favours for the decay and level parameters, and how it
relates to the gradient norms of :func:`~scrapl_graph.experiments.drum_decay.path_gradients`.
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from ..losses.scrapl_theta_is import path_loss
from ..scrapl import curvature
from .drum_decay import DrumDecayConfig, _scrapl, decay_level_columns, seed_problem


def path_curvature(cfg: DrumDecayConfig, seed: int = 0, examples: Optional[Sequence[int]] = None,
                   paths: Optional[Sequence[int]] = None) -> Dict[str, Tensor]:
    """theta-IS curvature ``C[u, p]`` of every path of the union set, at the presets (aligned setting).

    Args:
        cfg: the experiment's settings.
        seed: the seed whose targets are used.
        examples: which targets (rows of the batch) enter the max over
            examples; default one per preset (the first of each), which halves
            the cost against all of them.
        paths: path indices (default all, second order then first order).

    Returns:
        ``"order"`` ``(P,)``, ``"curvature"`` ``(P, U)`` (``max_b |H_b[u, u]|``),
        ``"decay_columns"`` (the decay/level columns of theta) and
        ``"seconds"`` ``(P,)`` (time of each path's Hessian) and ``"examples"`` (how many targets).
    """
    synth, theta_init, _, target = seed_problem(cfg, "aligned", seed)
    if examples is None:
        examples = list(range(0, theta_init.shape[0], cfg.targets_per_preset))
    examples = list(examples)
    if not examples or min(examples) < 0 or max(examples) >= theta_init.shape[0]:
        raise ValueError(f"examples must index the {theta_init.shape[0]} targets, got {examples}")
    theta0, x = theta_init[examples], target[examples]
    loss = _scrapl(cfg, synth.n_theta, first_order_share="uniform").eval()
    paths = range(loss.n_paths) if paths is None else list(paths)
    distance = path_loss(loss)
    orders, values, seconds = [], [], []
    for p in paths:
        start = time.perf_counter()
        model = curvature.theta_model(distance, p, synth, {}, x, theta0, "per_example")
        seconds.append(time.perf_counter() - start)
        diag = model.hessian.diagonal(dim1=1, dim2=2)  # (B, U): H_b[u, u]
        values.append(diag.abs().max(dim=0).values.double())
        orders.append(loss.path_info[p].order)
    return {"order": torch.tensor(orders), "curvature": torch.stack(values),
            "decay_columns": torch.tensor(decay_level_columns(synth)), "seconds": torch.tensor(seconds),
            "examples": torch.tensor(len(examples))}


def _ranks(v: Tensor) -> Tensor:
    """Average ranks (ties share the mean of their positions)."""
    v = v.double()
    ranks = torch.empty_like(v)
    order = v.argsort()
    ranks[order] = torch.arange(len(v), dtype=torch.float64)
    for value in v.unique():
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of two vectors (Pearson's correlation of their ranks)."""
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two vectors of the same length >= 2, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-300))


def theta_is_mixture(curv: Tensor, columns: Optional[Sequence[int]] = None) -> Tensor:
    """Eq. 10 without its floor: ``pi_p = mean_u C[u, p] / sum_p' C[u, p']`` over ``columns`` (default all)."""
    c = curv if columns is None else curv[:, list(columns)]
    return (c / c.sum(dim=0, keepdim=True).clamp_min(1e-300)).mean(dim=1)


def summarize_curvature(curv: Dict[str, Tensor], grads: Dict[str, Tensor]) -> str:
    """A markdown summary of :func:`path_curvature` against :func:`~.drum_decay.path_gradients` (same paths)."""
    order, c = curv["order"], curv["curvature"]
    if not torch.equal(order, grads["order"]):
        raise ValueError("curvature and gradients must cover the same paths in the same order")
    cols = curv["decay_columns"].tolist()
    rest = [u for u in range(c.shape[1]) if u not in cols]
    second = order == 2
    n2, n1 = int(second.sum()), int((~second).sum())
    pi_all, pi_decay, pi_rest = theta_is_mixture(c), theta_is_mixture(c, cols), theta_is_mixture(c, rest)
    ranked = grads["decay_norm"][second].sort(descending=True)
    half = int((ranked.values.cumsum(0) < 0.5 * ranked.values.sum()).sum()) + 1
    top = ranked.indices[:half]  # second-order paths holding half the decay/level gradient norm
    pi2 = pi_all[second] / pi_all[second].sum()  # theta-IS within the second order (the share is imposed)
    corr = rank_correlation(pi_decay, grads["decay_norm"])
    corr2 = rank_correlation(pi_decay[second], grads["decay_norm"][second])
    ratio = pi_decay / pi_rest.clamp_min(1e-300)  # how much more a path matters to the decay/level group
    fo = ~second
    lines = [
        f"- curvature C[u, p] of {n2} second-order and {n1} first-order paths for {len(cols)} decay/level and "
        f"{len(rest)} other parameters (the largest per-example Hessian diagonal entry over "
        f"{int(curv.get('examples', torch.tensor(0)))} targets): {float(curv['seconds'].mean()):.1f} s per path, "
        f"{float(curv['seconds'].sum()):.0f} s in all",
        f"- theta-IS mass (eq. 10, no floor) on the first-order paths ({100 * n1 / (n1 + n2):.1f}% of the union's "
        f"paths): {100 * float(pi_all[fo].sum()):.1f}% with all parameters, {100 * float(pi_decay[fo].sum()):.1f}% "
        f"with the decay/level parameters only, {100 * float(pi_rest[fo].sum()):.1f}% with the others only",
        f"- rank correlation (Spearman) of a path's decay/level curvature (theta-IS mass) with its decay/level "
        f"gradient norm: {corr:+.2f} over all paths, {corr2:+.2f} over the second-order ones",
        f"- the {half} second-order paths holding half the decay/level gradient norm get {100 * float(pi2[top].sum()):.1f}% "
        f"of theta-IS's second-order draws (all parameters; uniform: {100 * half / n2:.1f}%)",
        f"- median ratio of a path's theta-IS mass for the decay/level parameters to that for the others: "
        f"first-order {float(ratio[fo].median()):.2f}, second-order {float(ratio[second].median()):.2f}",
    ]
    favoured = pi_all.argsort(descending=True)[:5].tolist()
    lines.append("- paths theta-IS favours most (all parameters): " + ", ".join(
        f"{p} (order {int(order[p])}, {100 * float(pi_all[p]):.1f}%)" for p in favoured))
    return "\n".join(lines)


def curvature_report(cfg: DrumDecayConfig, out: str, seed: int = 0) -> str:
    """:func:`summarize_curvature` of seed ``seed``; the tensors are kept in ``out/curvature_seed_<seed>.pt``
    (read back instead of computed when present)."""
    import os

    from .drum_decay import path_gradients

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"curvature_seed_{seed}.pt")
    if os.path.exists(path):
        saved = torch.load(path)
        curv, grads = saved["curvature"], saved["gradients"]
    else:
        curv, grads = path_curvature(cfg, seed), path_gradients(cfg, seed)
        torch.save({"curvature": curv, "gradients": grads}, path)
    return summarize_curvature(curv, grads)
