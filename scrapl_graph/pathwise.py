"""P-Adam and P-SAGA: per-path gradient state of SCRAPL (paper, Algorithm 1, equations 6 to 9).

At iteration k, with path p drawn and g the gradient of its loss for one
parameter tensor, P = number of paths, tau_p the last iteration p was drawn
(0 if never), and Gamma the set of paths visited before this step:

    m_p <- b1^((k - tau_p)/P) m_p + (1 - b1^((k - tau_p)/P)) g            (6)
    v_p <- b2^((k - tau_p)/P) v_p + (1 - b2^((k - tau_p)/P)) g * g        (7)
    g_cur = (m_p / (1 - b1^(k/P))) / sqrt(eps + v_p / (1 - b2^(k/P)))     (8)
    g_out = g_cur - ghat_p + (sum_{c in Gamma} ghat_c) / max(1, |Gamma|)  (9)
    ghat_p <- g_cur;  Gamma <- Gamma + {p};  tau_p <- k

and the downstream optimizer (plain SGD) applies ``w <- w - lr * g_out``.
Without P-Adam, g_cur = g; without P-SAGA, g_out = g_cur.

The state of a path is allocated when the path is first drawn, on the
gradient's device, so memory grows with the visited paths only. The sum over
Gamma is kept as a running sum, so a step costs O(weights), not O(paths x
weights).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor


class PathwiseState:
    """P-Adam / P-SAGA state of one parameter tensor.

    Args:
        n_paths: P, the number of paths.
        use_p_adam, use_p_saga: which stabilizers to apply.
        b1, b2, eps: Adam hyperparameters (eps inside the square root, as in Algorithm 1).
    """

    def __init__(self, n_paths: int, use_p_adam: bool = True, use_p_saga: bool = True,
                 b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.n_paths = n_paths
        self.use_p_adam = use_p_adam
        self.use_p_saga = use_p_saga
        self.b1, self.b2, self.eps = b1, b2, eps
        self.m: Dict[int, Tensor] = {}
        self.v: Dict[int, Tensor] = {}
        self.tau: Dict[int, int] = {}
        self.ghat: Dict[int, Tensor] = {}
        self.ghat_sum: Optional[Tensor] = None

    def step(self, grad: Tensor, path: int, k: int) -> Tensor:
        """Transform the gradient of path ``path`` at iteration ``k`` (k >= 1); updates the state.

        The state is updated in place: a step allocates two parameter-sized
        tensors (none more for a revisited path), which keeps it cheap on CPUs
        where fresh large allocations cost page faults.
        """
        g = grad
        if self.use_p_adam:
            P = self.n_paths
            decay = (k - self.tau.get(path, 0)) / P
            d1, d2 = self.b1**decay, self.b2**decay
            m, v = self.m.get(path), self.v.get(path)
            if m is None:
                m, v = g * (1 - d1), g * g * (1 - d2)
                self.m[path], self.v[path] = m, v
            else:
                m.mul_(d1).add_(g, alpha=1 - d1)
                v.mul_(d2).addcmul_(g, g, value=1 - d2)
            self.tau[path] = k
            # g_cur = m_hat / sqrt(eps + v_hat), with m_hat, v_hat the bias-corrected moments.
            g = torch.div(v, 1 - self.b2 ** (k / P)).add_(self.eps).sqrt_()
            torch.div(m, g, out=g).div_(1 - self.b1 ** (k / P))
        if self.use_p_saga:
            previous = self.ghat.get(path)
            if self.ghat_sum is None:
                self.ghat_sum = torch.zeros_like(g)
            out = torch.div(self.ghat_sum, max(1, len(self.ghat))).add_(g)
            self.ghat_sum.add_(g)
            if previous is None:
                self.ghat[path] = g.clone() if g is grad else g
            else:
                out.sub_(previous)
                self.ghat_sum.sub_(previous)
                previous.copy_(g)
            g = out
        return g

    @property
    def n_visited(self) -> int:
        return len(self.m) if self.use_p_adam else len(self.ghat)

    def nbytes(self) -> int:
        """Memory held by the per-path tensors."""
        tensors = list(self.m.values()) + list(self.v.values()) + list(self.ghat.values())
        if self.ghat_sum is not None:
            tensors.append(self.ghat_sum)
        return sum(t.numel() * t.element_size() for t in tensors)

    def state_dict(self) -> dict:
        return {"m": dict(self.m), "v": dict(self.v), "tau": dict(self.tau), "ghat": dict(self.ghat),
                "ghat_sum": self.ghat_sum}

    def load_state_dict(self, state: dict, like: Tensor) -> None:
        """Restore from :meth:`state_dict`, checking shapes against ``like`` and moving to its device."""
        for key in ("m", "v", "ghat"):
            for path, t in state[key].items():
                if t.shape != like.shape:
                    raise ValueError(f"pathwise state '{key}' of path {path} has shape {tuple(t.shape)}, "
                                     f"but the attached parameter has shape {tuple(like.shape)}")
        move = lambda t: t.to(device=like.device, dtype=like.dtype)  # noqa: E731
        self.m = {int(p): move(t) for p, t in state["m"].items()}
        self.v = {int(p): move(t) for p, t in state["v"].items()}
        self.tau = {int(p): int(t) for p, t in state["tau"].items()}
        self.ghat = {int(p): move(t) for p, t in state["ghat"].items()}
        self.ghat_sum = None if state["ghat_sum"] is None else move(state["ghat_sum"])
