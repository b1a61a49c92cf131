"""P-Adam / P-SAGA as a ``torch.optim.Optimizer`` that reads the SCRAPL loss's current path."""
from __future__ import annotations

import logging
from typing import Iterable, Optional

import torch
from torch import Tensor

from .pathwise import PathwiseConfig, new_state, pathwise_step, state_nbytes
from .side_grads import SideGradients

log = logging.getLogger(__name__)


class PathwiseAdamSAGA(torch.optim.Optimizer):
    r"""SGD on gradients transformed by P-Adam and P-SAGA (paper, Algorithm 1).

    At each :meth:`step`, for every parameter ``w`` with a gradient ``g``:

        g_out = pathwise(grad_mult * g; path p, iteration k)    (eqs. 6-9)
        w <- w - lr * (g_out + g_side + weight_decay * w)

    where ``p`` and ``k`` are the loss's ``curr_path_idx`` and
    ``step_count`` after its last training forward, and ``g_side`` the
    gradient of the terms summed beside SCRAPL (zero for SCRAPL alone; see
    :mod:`scrapl_graph.scrapl.side_grads`). Weight decay is applied as
    ``torch.optim.SGD`` applies it: added to the transformed gradient.

    This is the same computation as ``loss.attach_params(params)`` with plain
    SGD (one implementation of the equations is shared; both forms replay
    Algorithm 1 exactly), with two differences: the per-path moments and
    SAGA tables live in this optimizer's ``state_dict`` (the loss's holds the
    sampler and the step counter), and under data-parallel training this
    optimizer sees the all-reduced gradient, while the hooks of
    ``attach_params`` see each process's local gradient.

    Call ``zero_grad()`` and one SCRAPL forward/backward per step: the
    gradient must be that of one path. Gradient accumulation over several
    SCRAPL calls is refused, as the state is per path.

    Args:
        params: the parameters (or parameter groups) to train.
        lr: learning rate.
        weight_decay: L2 penalty, as in SGD.
        loss: the :class:`~scrapl_graph.SCRAPLLoss` whose path drives the state;
            its ``grad_mult``, ``use_p_adam``, ``use_p_saga``, ``p_adam_b1``,
            ``p_adam_b2`` and ``p_adam_eps`` are the defaults of the settings below.
        grad_mult, use_p_adam, use_p_saga, betas, eps: overrides of the loss's settings.
        side_gradients: the stash of a sum of losses holding ``loss``
            (:class:`~scrapl_graph.scrapl.SideGradients`), taken at every step.

    Raises:
        ValueError: for a non-positive learning rate, negative weight decay,
            or a loss without a path counter.
    """

    def __init__(self, params: Iterable, lr: float, weight_decay: float = 0.0, *, loss,
                 grad_mult: Optional[float] = None, use_p_adam: Optional[bool] = None,
                 use_p_saga: Optional[bool] = None, betas: Optional[tuple] = None, eps: Optional[float] = None,
                 side_gradients: Optional[SideGradients] = None):
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if not all(hasattr(loss, name) for name in ("curr_path_idx", "step_count", "n_paths")):
            raise ValueError(f"loss must be a SCRAPL loss (with curr_path_idx, step_count and n_paths), "
                             f"got {type(loss).__name__}")
        b1, b2 = betas if betas is not None else (loss.p_adam_b1, loss.p_adam_b2)
        self.cfg = PathwiseConfig(
            n_paths=loss.n_paths, b1=float(b1), b2=float(b2),
            use_p_adam=loss.use_p_adam if use_p_adam is None else bool(use_p_adam),
            use_p_saga=loss.use_p_saga if use_p_saga is None else bool(use_p_saga),
            eps=loss.p_adam_eps if eps is None else float(eps),
            grad_mult=loss.grad_mult if grad_mult is None else float(grad_mult))
        self.loss, self.side_gradients = loss, side_gradients
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    def _transformed(self, param: Tensor, path: int, k: int) -> Tensor:
        state = self.state[param]
        if "pathwise" not in state:
            state["pathwise"] = new_state()
            state["k"] = 0
        if state["k"] == k:
            raise RuntimeError(f"PathwiseAdamSAGA.step() called twice for SCRAPL iteration {k}: run one training "
                               f"forward of the loss (and backward) between steps")
        state["k"] = k
        grad = param.grad
        if self.cfg.grad_mult != 1.0:
            grad = grad * self.cfg.grad_mult
        if self.cfg.use_p_adam or self.cfg.use_p_saga:
            grad = pathwise_step(state["pathwise"], grad, path, k, self.cfg)
        return grad

    @torch.no_grad()
    def step(self, closure=None):
        """One update with the gradients of the loss's current path.

        Raises:
            RuntimeError: if the loss has not run a training forward yet, or
                has not run one since the last step.
        """
        value = None
        if closure is not None:
            with torch.enable_grad():
                value = closure()
        path, k = self.loss.curr_path_idx, int(self.loss.step_count)
        if path is None or k < 1:
            raise RuntimeError("PathwiseAdamSAGA.step() needs a training forward of the SCRAPL loss first")
        side = self.side_gradients.take() if self.side_gradients is not None else {}
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None and param not in side:
                    continue
                update = self._transformed(param, path, k) if param.grad is not None else torch.zeros_like(param)
                if param in side:  # after the transform, as weight decay: not the path's gradient
                    update = update.add(side[param])
                if group["weight_decay"]:
                    update = update.add(param, alpha=group["weight_decay"])
                param.add_(update, alpha=-group["lr"])
        return value

    def pathwise_state_bytes(self) -> int:
        """Memory held by P-Adam / P-SAGA state (visited paths only)."""
        return sum(state_nbytes(s["pathwise"]) for s in self.state.values() if "pathwise" in s)
