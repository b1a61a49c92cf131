r"""Path probabilities over two orders of paths with a fixed share of mass per order.

A SCRAPL loss may sample, beside the P2 second-order paths (indices
``0 .. P2 - 1``), the P1 first-order paths (indices ``P2 .. P2 + P1 - 1``).
The share ``s`` is the probability mass of the first order; the prior gives
every first-order path ``s / P1`` and every second-order path
``(1 - s) / P2``. ``s = P1 / (P2 + P1)`` is uniform over the union.

theta-IS keeps the share: its distribution ``q`` over the union (eq. 10,
without the floor) is renormalized within each order o and mixed with the
floor ``f``,

    pi_p = m_o ( (1 - f) q_p / sum_{p' in o} q_p' + f / P_o ),   m_1 = s, m_2 = 1 - s,

so theta-IS redistributes mass within an order, never between the orders,
and every path keeps at least ``f`` times its prior probability.
"""
from __future__ import annotations

import numbers
from typing import Optional, Union

import torch
from torch import Tensor

Share = Union[None, float, str]


def resolve_share(first_order_share: Share, n_second: int, n_first: int) -> Optional[float]:
    """The first order's mass as a float, or None for the second-order paths only.

    Args:
        first_order_share: None, a number in (0, 1), or ``"uniform"`` (``n_first / (n_second + n_first)``).
        n_second, n_first: numbers of second- and first-order paths.

    Raises:
        TypeError: for another type.
        ValueError: for a number outside (0, 1) or another string.
    """
    if first_order_share is None:
        return None
    if isinstance(first_order_share, str):
        if first_order_share != "uniform":
            raise ValueError(f"first_order_share must be None, a number in (0, 1) or 'uniform', "
                             f"got {first_order_share!r}")
        return n_first / (n_second + n_first)
    if isinstance(first_order_share, bool) or not isinstance(first_order_share, numbers.Real):
        raise TypeError(f"first_order_share must be None, a number in (0, 1) or 'uniform', "
                        f"got {type(first_order_share).__name__} {first_order_share!r}")
    if not 0.0 < first_order_share < 1.0:
        raise ValueError(f"first_order_share must be in (0, 1) (the first order's probability mass), "
                         f"got {first_order_share}")
    return float(first_order_share)


def order_prior(n_second: int, n_first: int, share: Optional[float]) -> Tensor:
    """Prior path probabilities, float64 ``(n_second + n_first,)``: ``(1 - s) / P2`` then ``s / P1``.

    With ``share=None`` (no first-order paths) it is uniform, ``1 / P2``.
    """
    if share is None:
        return torch.full((n_second,), 1.0 / n_second, dtype=torch.float64)
    return torch.cat([torch.full((n_second,), (1.0 - share) / n_second, dtype=torch.float64),
                      torch.full((n_first,), share / n_first, dtype=torch.float64)])


def impose_share(q: Tensor, n_second: int, share: float, floor_frac: float = 0.0) -> Tensor:
    """Path probabilities from a distribution ``q`` over the union that keep the share (see the module docstring).

    Args:
        q: ``(n_second + n_first,)`` positive weights (a distribution over the union).
        n_second: P2; the first order is the rest.
        share: s, the first order's mass.
        floor_frac: f in [0, 1).

    Returns:
        float64 probabilities, summing to 1, with mass ``s`` on the first order.
    """
    q = q.to(torch.float64)
    out = torch.empty_like(q)
    for part, mass in ((slice(0, n_second), 1.0 - share), (slice(n_second, None), share)):
        within = q[part] / q[part].sum()
        out[part] = mass * ((1.0 - floor_frac) * within + floor_frac / within.numel())
    return out
