"""Validation of the SCRAPL loss's constructor arguments (one message per rule)."""
from __future__ import annotations

import numbers


#: The optimizers a SCRAPL loss can make for a run (:meth:`~scrapl_graph.SCRAPLLoss.make_optimizer`).
OWN_OPTIMIZERS = ("pathwise", "adam")


def check_config(use_p_adam, use_rho_log1p, grad_mult, n_theta, min_prob_frac, paths_per_step, use_p_saga, p,
                 betas, optimizer="pathwise") -> None:
    """Refuse argument combinations of :class:`~scrapl_graph.SCRAPLLoss` that cannot work.

    Raises:
        ValueError: naming the argument and the rule it breaks.
    """
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
    if optimizer not in OWN_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OWN_OPTIMIZERS}, got {optimizer!r}")
    if optimizer == "adam" and (use_p_adam or use_p_saga):
        raise ValueError("optimizer='adam' keeps one Adam state for all paths: set use_p_adam=False and "
                         "use_p_saga=False (P-Adam and P-SAGA need optimizer='pathwise')")
    for name, beta in zip(("p_adam_b1", "p_adam_b2"), betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {beta}")
