r"""Linear recursions without a Python loop over samples.

The filters here are linear state-space systems

.. math::

    s[n+1] = A[n] \, s[n] + u[n], \qquad s[n] \in \mathbb{R}^D,

whose matrix ``A[n]`` is constant within each block of ``B`` samples (a
static filter, or a modulated one whose coefficients are updated at block
rate). Two ideas make them fast in PyTorch on a CPU:

1. Within a block ``A`` is fixed, so every block can be advanced one sample
   at a time *in parallel*: a loop of ``B`` steps, each a small matrix-vector
   product over all blocks at once (:func:`blockwise_linear_scan`).
2. Across blocks the recursion of block start states is again linear,
   ``S_{k+1} = A_k^B S_k + z_k`` with ``z_k`` the block's end state from a zero
   start. :func:`linear_recurrence` solves a linear recursion of length K in
   about ``2 sqrt(K)`` vectorised steps: cut it into groups of ``M ~ sqrt(K)``,
   run every group from a zero start while accumulating the products
   ``Q_m = A_{m-1} ... A_0``, chain the groups' start states, then correct
   every state with ``s_m = Q_m s_0 + z_m``.

Both are exact rearrangements of the sample-by-sample recursion; they
differ from it only by float rounding (relative 1e-6 in float32 for stable
systems, where the products ``Q_m`` shrink).
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import Tensor


def matvec(A: Tensor, v: Tensor) -> Tensor:
    """``A @ v`` over leading batch axes, ``(..., D, D) x (..., D) -> (..., D)``.

    Written as a broadcast product and sum: for D of 1 to 8 this is faster on
    a CPU than a batched matmul of tiny matrices.
    """
    return (A * v.unsqueeze(-2)).sum(-1)


def linear_recurrence(P: Tensor, w: Tensor, s0: Tensor) -> Tuple[Tensor, Tensor]:
    """Solve ``s_{k+1} = P_k s_k + w_k`` for ``k = 0 .. K-1``.

    Args:
        P: ``(batch, K, D, D)`` transition matrices.
        w: ``(batch, K, D)`` inputs.
        s0: ``(batch, D)`` initial state.

    Returns:
        ``(states, final)``: ``states`` ``(batch, K, D)`` holds ``s_0 .. s_{K-1}``
        (the state before each step) and ``final`` ``(batch, D)`` is ``s_K``.
    """
    batch, K, D = w.shape
    M = max(1, math.isqrt(K - 1) + 1) if K > 1 else 1
    G = -(-K // M)
    pad = G * M - K
    if pad:
        # Identity steps with zero input leave the state unchanged.
        eye = torch.eye(D, dtype=P.dtype, device=P.device).expand(batch, pad, D, D)
        P = torch.cat([P, eye], dim=1)
        w = torch.cat([w, w.new_zeros(batch, pad, D)], dim=1)
    P = P.reshape(batch, G, M, D, D)
    w = w.reshape(batch, G, M, D)

    # Every group from a zero start, with the running products Q_m.
    z = w.new_zeros(batch, G, D)
    Q = torch.eye(D, dtype=P.dtype, device=P.device).expand(batch, G, D, D)
    zs, Qs = [], []
    for m in range(M):
        zs.append(z)
        Qs.append(Q)
        z = matvec(P[:, :, m], z) + w[:, :, m]
        Q = P[:, :, m] @ Q
    # Chain the groups: the start of group g+1 is the end of group g.
    starts, s = [], s0
    for g in range(G):
        starts.append(s)
        s = matvec(Q[:, g], s) + z[:, g]
    S = torch.stack(starts, dim=1)  # (batch, G, D)
    states = matvec(torch.stack(Qs, dim=2), S[:, :, None, :]) + torch.stack(zs, dim=2)
    return states.reshape(batch, G * M, D)[:, :K], s


def blockwise_linear_scan(A: Tensor, u: Tensor, s0: Tensor, block: int) -> Tuple[Tensor, Tensor]:
    """Solve ``s[n+1] = A_k s[n] + u[n]``, with ``A_k`` fixed over block ``k`` (samples ``kB .. kB+B-1``).

    Args:
        A: ``(batch, K, D, D)``, one matrix per block, ``K = ceil(N / B)``.
        u: ``(batch, N, D)`` per-sample inputs.
        s0: ``(batch, D)`` state before sample 0.
        block: the block length ``B``.

    Returns:
        ``(states, final)``: ``states`` ``(batch, N, D)`` holds ``s[0] .. s[N-1]``
        (the state before each sample) and ``final`` ``(batch, D)`` is ``s[N]``.

    Raises:
        ValueError: if ``A`` does not have one matrix per block.
    """
    batch, N, D = u.shape
    K = -(-N // block)
    if A.shape != (batch, K, D, D):
        raise ValueError(f"A must have shape {(batch, K, D, D)}, got {tuple(A.shape)}")
    pad = K * block - N
    if pad:
        u = torch.cat([u, u.new_zeros(batch, pad, D)], dim=1)
    u = u.reshape(batch, K, block, D)

    # Each block's end state from a zero start, all blocks at once.
    z = u.new_zeros(batch, K, D)
    for m in range(block):
        z = matvec(A, z) + u[:, :, m]
    starts, _ = linear_recurrence(torch.linalg.matrix_power(A, block), z, s0)
    # Run every block again from its true start state, keeping each state.
    s, states = starts, []
    for m in range(block):
        states.append(s)
        s = matvec(A, s) + u[:, :, m]
    states = torch.stack(states, dim=2).reshape(batch, K * block, D)
    # The padded tail of the last block had zero input, but A^pad still acted on
    # the final state: recompute s[N] from s[N-1] instead.
    if pad:
        final = matvec(A[:, -1], states[:, N - 1]) + u[:, -1, block - pad - 1]
    else:
        final = s[:, -1]
    return states[:, :N], final
