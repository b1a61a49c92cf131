r"""The frequential modulus and the time average of a path, streamed over time blocks.

For one temporal wavelet, the second-order coefficients of a batch of
frequential filters are

    S[b, r, c] = sum_t | sum_k W[r, k] Y[b, k, t] | A[t, c],

with Y the time-scattered scalogram (lambda1 x time), W the frequential
operators (rows r of the stacked filters) and A the time-average matrix
(see :mod:`.averaging`). The modulus ``|W Y|`` has rows x time entries, for
a small j2 ten times the size of Y, while S has only a few frames. Built
from whole-tensor operations, it is written to memory and read back by
every later kernel, forward and backward, and on a CPU those passes cost
more than the arithmetic. Here time is cut into blocks whose ``W Y`` fits
in cache: the forward accumulates each block's contribution to S; the
backward recomputes the block's ``W Y`` instead of keeping it, so memory
no longer grows with rows x time either:

    g_Z = Z (g_S A^T) / max(|Z|, floor),   g_Y = W^H g_Z,   g_W = sum_b g_Z Y^H.

The blocks are computed in real arithmetic on planar parts: Y as ``[Re Y; Im Y]``
and W as the real block matrix ``[[Re W, -Im W], [Im W, Re W]]``, so that
``W Y`` comes out as ``[Re Z; Im Z]``. The modulus and the backward's
scaling are then contiguous elementwise kernels; on the interleaved
complex layout their (re, im) axis of 2 keeps them from vectorizing on CPUs.

Second derivatives recompute the composed definition with autograd, as in
:mod:`.wavelet_modulus`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .ops import is_batched, modulus, modulus_floor

#: Complex elements of one block of ``W Y`` (batch x rows x block length): about 2 MB in complex64.
BLOCK_ELEMENTS = 2**18


def _block_length(batch: int, rows: int, length: int) -> int:
    # At least 256 samples per block: below that, per-block overhead outweighs locality.
    return max(256, min(length, BLOCK_ELEMENTS // max(1, batch * rows)))


def _definition(y: Tensor, w: Tensor, a: Tensor) -> Tensor:
    return torch.matmul(modulus(torch.matmul(w, y)), a)


def _planar_signal(y: Tensor) -> Tensor:
    """``[Re Y; Im Y]``: complex (batch, K, T) as real (batch, 2K, T)."""
    return torch.cat([y.real, y.imag], dim=1)


def _planar_operator(w: Tensor) -> Tensor:
    """``[[Re W, -Im W], [Im W, Re W]]``: W acting on ``[Re Y; Im Y]``, (2R, 2K) real."""
    return torch.cat([torch.cat([w.real, -w.imag], dim=1), torch.cat([w.imag, w.real], dim=1)], dim=0)


def _planar_modulus(z: Tensor, rows: int) -> Tensor:
    """|Z| from ``[Re Z; Im Z]`` (batch, 2R, t): (batch, R, t)."""
    re, im = z[:, :rows], z[:, rows:]
    return torch.mul(re, re).addcmul_(im, im).sqrt_()


class _StreamedModulusAverage(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: Tensor, w: Tensor, a: Tensor) -> Tensor:
        batch, _, length = y.shape
        rows = w.shape[0]
        step = _block_length(batch, rows, length)
        y_planar = _planar_signal(y)
        w_planar = _planar_operator(w)
        out = a.new_zeros(batch, rows, a.shape[-1])
        for s in range(0, length, step):
            z = torch.matmul(w_planar, y_planar[..., s : s + step])
            out.baddbmm_(_planar_modulus(z, rows), a[s : s + step].expand(batch, -1, -1))
        ctx.save_for_backward(y, w, a)
        ctx.step = step
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        y, w, a = ctx.saved_tensors
        wants_y, wants_w, wants_a = ctx.needs_input_grad
        # create_graph=True, a trainable average or batched gradients: the definition.
        if torch.is_grad_enabled() or wants_a or is_batched(grad):
            inputs = [t for t, wanted in zip((y, w, a), ctx.needs_input_grad) if wanted]
            with torch.enable_grad():
                out = _definition(y, w, a)
            grads = iter(torch.autograd.grad(out, inputs, grad, create_graph=torch.is_grad_enabled()))
            return tuple(next(grads) if wanted else None for wanted in ctx.needs_input_grad)
        floor = modulus_floor(a.dtype)
        batch, (rows, k) = y.shape[0], w.shape
        # Rebuilt rather than kept from the forward: a planar copy of y per path would double what the graph holds.
        y_planar, w_planar = _planar_signal(y), _planar_operator(w)
        g_y = torch.empty_like(y_planar) if wants_y else None
        g_w = torch.zeros_like(w_planar) if wants_w else None
        w_t = w_planar.transpose(0, 1)
        for s in range(0, y.shape[-1], ctx.step):
            y_block = y_planar[..., s : s + ctx.step]
            z = torch.matmul(w_planar, y_block)
            scale = torch.matmul(grad, a[s : s + ctx.step].transpose(0, 1)).div_(
                _planar_modulus(z, rows).clamp_min_(floor))
            # dL/dRe Z and dL/dIm Z: both parts scaled alike (an outer broadcast, vectorized).
            g_z = z.view(batch, 2, rows, -1).mul_(scale.unsqueeze(1)).view(batch, 2 * rows, -1)
            if wants_y:
                g_y[..., s : s + ctx.step] = torch.matmul(w_t, g_z)
            if wants_w:
                g_w += torch.matmul(g_z, y_block.transpose(1, 2)).sum(dim=0)
        # Complex gradients are dL/dRe + i dL/dIm; W's real and imaginary parts each appear twice in the block matrix.
        if wants_y:
            g_y = torch.complex(g_y[:, :k], g_y[:, k:])
        if wants_w:
            g_w = torch.complex(g_w[:rows, :k] + g_w[rows:, k:], g_w[rows:, :k] - g_w[:rows, k:])
        return g_y, g_w, None


def streamed_modulus_average(y: Tensor, w: Tensor, a: Tensor) -> Tensor:
    """``|w @ y| @ a`` without materialising ``w @ y``.

    Args:
        y: complex (batch, K, T).
        w: complex (R, K).
        a: real (T, C).

    Returns:
        Real (batch, R, C).
    """
    return _StreamedModulusAverage.apply(y, w, a)
