"""P-Adam and P-SAGA: per-path gradient state of SCRAPL (paper, Algorithm 1, equations 6 to 9).

At iteration k, with path p drawn and g the gradient of its loss for one
parameter tensor, P = number of paths, tau_p the last iteration p was drawn
(0 if never), and Gamma the set of paths visited before this step:

    m_p <- b1^((k - tau_p)/P) m_p + (1 - b1^((k - tau_p)/P)) g            (6)
    v_p <- b2^((k - tau_p)/P) v_p + (1 - b2^((k - tau_p)/P)) g * g        (7)
    g_cur = (m_p / (1 - b1^(k/P))) / sqrt(eps + v_p / (1 - b2^(k/P)))     (8)
    g_out = g_cur - ghat_p + (sum_{c in Gamma} ghat_c) / max(1, |Gamma|)  (9)
    ghat_p <- g_cur;  Gamma <- Gamma + {p};  tau_p <- k

and plain SGD applies ``w <- w - lr * g_out``. Without P-Adam, g_cur = g;
without P-SAGA, g_out = g_cur.

:func:`pathwise_step` is the one implementation of these equations. It
works on a plain dict of tensors per parameter tensor, so that the same state
lives in the optimizer form (:class:`scrapl_graph.scrapl.PathwiseAdamSAGA`,
whose ``state_dict`` holds it) and in the reference-compatible hook form
(:class:`PathwiseHooks`, behind ``SCRAPLLoss.attach_params``).

The state of a path is allocated when the path is first drawn, on the
gradient's device, so memory grows with the visited paths only. The sum over
Gamma is kept as a running sum, so a step costs O(weights), not O(paths x
weights).
"""
from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import torch
from torch import Tensor

from ..checks import wants_value_check

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PathwiseConfig:
    """The settings of Algorithm 1 for one run.

    Attributes:
        n_paths: P, the number of paths.
        use_p_adam, use_p_saga: which stabilisers to apply.
        b1, b2, eps: Adam hyperparameters (eps inside the square root, as in Algorithm 1).
        grad_mult: factor applied to the gradient before P-Adam (keeps tiny JTFS
            gradients clear of float32 underflow when squared).
    """

    n_paths: int
    use_p_adam: bool = True
    use_p_saga: bool = True
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    grad_mult: float = 1.0


def new_state() -> Dict[str, object]:
    """Empty per-parameter state: moments, last visits and SAGA table keyed by path index."""
    return {"m": {}, "v": {}, "tau": {}, "ghat": {}, "ghat_sum": None}


def pathwise_step(state: Dict[str, object], grad: Tensor, path: int, k: int, cfg: PathwiseConfig) -> Tensor:
    """Transform the gradient of path ``path`` at iteration ``k`` (k >= 1); updates ``state`` in place.

    ``grad_mult`` is not applied here (the callers scale first). A step
    allocates at most two parameter-sized tensors (none more for a revisited
    path), which keeps it cheap on CPUs where fresh allocations cost page faults.

    Returns:
        g_out of equation 9 (a new tensor unless both stabilisers are off).
    """
    g = grad
    if cfg.use_p_adam:
        P = cfg.n_paths
        m_all, v_all, tau = state["m"], state["v"], state["tau"]
        decay = (k - tau.get(path, 0)) / P
        d1, d2 = cfg.b1**decay, cfg.b2**decay
        m, v = m_all.get(path), v_all.get(path)
        if m is None:
            m, v = g * (1 - d1), g * g * (1 - d2)
            m_all[path], v_all[path] = m, v
        else:
            m.mul_(d1).add_(g, alpha=1 - d1)
            v.mul_(d2).addcmul_(g, g, value=1 - d2)
        tau[path] = k
        g = torch.div(v, 1 - cfg.b2 ** (k / P)).add_(cfg.eps).sqrt_()
        torch.div(m, g, out=g).div_(1 - cfg.b1 ** (k / P))
    if cfg.use_p_saga:
        ghat = state["ghat"]
        previous = ghat.get(path)
        if state["ghat_sum"] is None:
            state["ghat_sum"] = torch.zeros_like(g)
        total = state["ghat_sum"]
        out = torch.div(total, max(1, len(ghat))).add_(g)
        total.add_(g)
        if previous is None:
            ghat[path] = g.clone() if g is grad else g
        else:
            out.sub_(previous)
            total.sub_(previous)
            previous.copy_(g)
        g = out
    return g


def state_nbytes(state: Dict[str, object]) -> int:
    """Memory held by the per-path tensors of one parameter's state."""
    tensors = [t for key in ("m", "v", "ghat") for t in state[key].values()]
    if state["ghat_sum"] is not None:
        tensors.append(state["ghat_sum"])
    return sum(t.numel() * t.element_size() for t in tensors)


def load_state(saved: Dict[str, object], like: Tensor) -> Dict[str, object]:
    """A state from its saved form, checked against parameter ``like`` and moved to its device and dtype.

    Raises:
        ValueError: if a saved tensor's shape differs from the parameter's.
    """
    for key in ("m", "v", "ghat"):
        for path, t in saved[key].items():
            if t.shape != like.shape:
                raise ValueError(f"pathwise state '{key}' of path {path} has shape {tuple(t.shape)}, "
                                 f"but the parameter has shape {tuple(like.shape)}")
    move: Callable[[Tensor], Tensor] = lambda t: t.to(device=like.device, dtype=like.dtype)  # noqa: E731
    return {"m": {int(p): move(t) for p, t in saved["m"].items()},
            "v": {int(p): move(t) for p, t in saved["v"].items()},
            "tau": {int(p): int(t) for p, t in saved["tau"].items()},
            "ghat": {int(p): move(t) for p, t in saved["ghat"].items()},
            "ghat_sum": None if saved["ghat_sum"] is None else move(saved["ghat_sum"])}


class PathwiseHooks:
    """The hook form: P-Adam / P-SAGA applied to attached parameters' gradients during ``backward``.

    ``owner`` is the loss: the hooks read its ``training`` flag, current path
    and step counter. After each training forward the loss calls
    :meth:`arm`; each attached parameter's next gradient is then transformed
    once. The hooks see each process's local gradient (before any
    data-parallel all-reduce).
    """

    def __init__(self, owner, cfg: PathwiseConfig):
        self.owner = owner
        self.cfg = cfg
        self.params: List[Tensor] = []
        self.states: List[Dict[str, object]] = []
        self._handles: list = []
        self._pending: set = set()
        self._paused = False

    def attach(self, params: Iterable[Tensor]) -> None:
        """Attach ``params`` (an empty list detaches); resets the per-path state.

        Raises:
            TypeError: if an element is not a tensor that requires grad.
        """
        params = list(params)
        for i, param in enumerate(params):
            if not isinstance(param, Tensor) or not param.requires_grad:
                raise TypeError(f"attached parameter {i} must be a tensor that requires grad, got {type(param).__name__}")
        n_previous = len(self.params)
        self.detach()
        self.params = params
        self.states = [new_state() for _ in params]
        for i, param in enumerate(params):
            self._handles.append(param.register_hook(functools.partial(self._hook, index=i)))
        if params:
            log.info("Attached %d parameter tensors (%d weights)", len(params), sum(q.numel() for q in params))
        elif n_previous:
            log.info("Detached %d parameter tensors", n_previous)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._pending = [], set()
        self.params, self.states = [], []

    def arm(self) -> None:
        self._pending = set(range(len(self.params)))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Pass gradients through untouched inside the block, and leave the armed state as it is.

        Gradient hooks fire on every gradient computed for a parameter,
        ``torch.autograd.grad`` included: a gradient that is not the path's
        (that of a term summed beside SCRAPL) is taken inside this block.
        """
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def _hook(self, grad: Tensor, index: int) -> Tensor:
        if self._paused or not self.owner.training or index not in self._pending:
            return grad
        self._pending.discard(index)
        param = self.params[index]
        # A value read: on CUDA only when asked (see scrapl_graph.checks).
        if param.grad is not None and wants_value_check(param.grad) and bool(param.grad.any()):
            raise ValueError(f"attached parameter {index} already holds a gradient: call zero_grad() before "
                             f"each SCRAPL backward (P-Adam/P-SAGA transform one path's gradient)")
        if self.cfg.grad_mult != 1.0:
            grad = grad * self.cfg.grad_mult
        if self.cfg.use_p_adam or self.cfg.use_p_saga:
            grad = pathwise_step(self.states[index], grad, self.owner.curr_path_idx, self.owner.step_count, self.cfg)
        return grad

    def nbytes(self) -> int:
        return sum(state_nbytes(s) for s in self.states)

    def check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Warn when ``optimizer`` would transform the hooks' output again, or scale it unawares."""
        cfg = self.cfg
        pathwise = cfg.use_p_adam or cfg.use_p_saga
        if pathwise and not isinstance(optimizer, torch.optim.SGD):
            log.warning("SCRAPL with P-Adam/P-SAGA expects plain SGD (no momentum), got %s: gradients are "
                        "transformed twice", type(optimizer).__name__)
        elif pathwise and any(g.get("momentum", 0) for g in optimizer.param_groups):
            log.warning("SCRAPL with P-Adam/P-SAGA expects plain SGD without momentum")
        if not cfg.use_p_adam and cfg.grad_mult != 1.0 and isinstance(optimizer, torch.optim.SGD):
            log.warning("SCRAPL without P-Adam multiplies gradients by grad_mult=%g: scale the SGD learning rate "
                        "down accordingly", cfg.grad_mult)

    def state_dict(self) -> List[Dict[str, object]]:
        return [{key: dict(s[key]) if isinstance(s[key], dict) else s[key] for key in s} for s in self.states]

    def load_state_dict(self, saved: Optional[List[Dict[str, object]]]) -> None:
        """Restore the state of the attached parameters.

        Raises:
            ValueError: if the number of saved states differs from the attached
                parameters, or shapes differ.
        """
        if not saved:
            return
        if len(saved) != len(self.params):
            raise ValueError(f"state holds P-Adam/P-SAGA state for {len(saved)} parameter tensors but "
                             f"{len(self.params)} are attached: call attach_params() first")
        self.states = [load_state(s, param) for s, param in zip(saved, self.params)]
