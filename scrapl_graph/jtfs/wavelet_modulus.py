r"""The first-order wavelet modulus as one autograd node: band product, inverse FFT, modulus, real FFT.

For a real signal given by its half spectrum ``X`` and a batch of wavelets
``psi_f`` that occupy one run of ``L`` bins, the first order needs

    u_hat_f = rfft( | ifft_m( X[idx] * psi_f ) | )[:bins],

where the band is placed at bin 0 of a length-``m`` spectrum (a shift in
frequency is a unit phase in time, which the modulus removes), and only
the first ``bins`` bins are kept: the second-order wavelets of a path read
a low band, so that the backward starts from a gradient of that size
rather than a whole spectrum of zeros. Composed
from separate torch operations, this costs a zero-padded copy of the
product in the forward pass and, in the backward pass, a chain of
elementwise kernels over ``(batch, filters, m)`` complex tensors; the
scalogram is most of a SCRAPL step, and those passes over memory cost as
much as its FFTs. :class:`_WaveletModulus` writes the product into the
transform's buffer, and writes the backward as the
adjoints of its four steps:

    g_r = rfft^*(G),   g_y = y g_r / max(|y|, floor),   g_b = ifft^*(g_y) = fft(g_y) / m,
    g_X[idx] += sum_f g_b[:L] psi_f.

Second derivatives (Hessian-vector products for theta-IS) are taken by
recomputing the node from its saved input with autograd when the backward
runs with ``create_graph=True``, so the fused backward never has to be
differentiated itself.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import native, planned_fft, recycled
from .ops import interleaved, is_batched, magnitude, modulus, modulus_floor, rfft, rfft_adjoint, scale_parts


def _forward(x_half: Tensor, idx: Tensor, val: Tensor, m: int, bins: Optional[int] = None) -> Tensor:
    """The node composed from differentiable operations (the definition, and the double-backward path)."""
    band = scale_parts(x_half[..., idx], val)
    return rfft(modulus(planned_fft.ifft(band, n=m)))[..., :bins]


class HalfSpectrumBuffer:
    """A kept complex buffer of half spectra (..., m // 2 + 1), zero beyond the bins last written.

    The backward of a node whose output was cut to ``bins`` writes the gradient's bins here
    and zeroes only what an earlier, longer gradient left behind.
    """

    def __init__(self, data: Tensor):
        self.data = data.zero_()
        self._written = 0

    def take(self, bins: int) -> Tensor:
        """The buffer, zero from bin ``bins`` on; the caller writes the first ``bins``."""
        if self._written > bins:
            self.data[..., bins : self._written].zero_()
        self._written = bins
        return self.data


class _WaveletModulus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_half: Tensor, idx: Tensor, val: Tensor, m: int, workspace: Optional[Tensor],
                grad_buffer: Optional[HalfSpectrumBuffer], bins: int, recorded: bool) -> Tensor:
        batch, n_filters, length = x_half.shape[0], val.shape[0], val.shape[1]
        # Advanced indexing (index_select along the last axis is several times slower on CPUs); the
        # (re, im) pairs are multiplied as one flat axis (see .ops.scale_parts).
        selected = torch.view_as_real(x_half[..., idx]).flatten(-2)
        y = workspace if workspace is not None else zero_padded_buffer(x_half, n_filters, m, length)
        y_flat = torch.view_as_real(y).view(batch, n_filters, 2 * m)
        torch.mul(selected, val.flatten(-2), out=y_flat[..., : 2 * length])
        y = planned_fft.ifft(y, out=recycled.take(y.shape, y.dtype, y))
        r = magnitude(y, out=recycled.take(y.shape, y.real.dtype, y))
        if bins == m // 2 + 1:
            u_hat = planned_fft.rfft(r)
        else:
            whole = planned_fft.rfft(r, out=recycled.take((batch, n_filters, m // 2 + 1), y.dtype, y))
            u_hat = whole[..., :bins].clone()
            recycled.give(whole)
        ctx.save_for_backward(x_half, idx, val)
        ctx.m, ctx.grad_buffer = m, grad_buffer
        if recorded:
            # Kept off save_for_backward: the first backward overwrites y with its gradient (one buffer fewer).
            ctx.y, ctx.r = y, r
        else:
            ctx.y = ctx.r = None
            recycled.give(y, r)
        return u_hat

    @staticmethod
    def backward(ctx, grad: Tensor):
        x_half, idx, val = ctx.saved_tensors
        y, r = ctx.y, ctx.r
        ctx.y = ctx.r = None
        wants_x, _, wants_val = ctx.needs_input_grad[:3]
        # create_graph=True, or a second backward (retain_graph=True) after y was overwritten:
        # differentiate the composed definition.
        create_graph = torch.is_grad_enabled()
        if create_graph or y is None or is_batched(grad):
            recycled.give(y, r)
            inputs = [t for t, wanted in ((x_half, wants_x), (val, wants_val)) if wanted]
            with torch.enable_grad():
                out = _forward(x_half, idx, val, ctx.m, grad.shape[-1])
            grads = iter(torch.autograd.grad(out, inputs, grad, create_graph=create_graph))
            g_x, g_val = (next(grads) if wants_x else None), (next(grads) if wants_val else None)
            return g_x, None, g_val, None, None, None, None, None
        # d|y|/dy = y / |y|; a floored |y| makes it 0 (not NaN) where y = 0.
        s, floor = _modulus_gradient(grad, ctx.m, ctx.grad_buffer), modulus_floor(r.dtype)
        if native.usable(y, s, r):
            g_y = native.scale_by_ratio_(y, s, r, floor)
        else:
            g_y = torch.view_as_complex(torch.view_as_real(y).mul_(interleaved(s.div_(r.clamp_min_(floor)))))
        # (batch, filters, 2 L): the band's (re, im) pairs as one flat axis.
        g_band = torch.view_as_real(planned_fft.fft_in_place(g_y, norm="forward")).flatten(-2)[..., : 2 * val.shape[1]]
        g_x = g_val = None
        if wants_x:
            # index_add along the complex last axis: along the (re, im) view's second-to-last it is
            # an unvectorized loop on CPUs.
            g_selected = (g_band * val.flatten(-2)).sum(dim=1, keepdim=True)
            g_x = torch.zeros_like(x_half).index_add_(-1, idx, torch.view_as_complex(g_selected.unflatten(-1, (-1, 2))))
        if wants_val:
            selected = torch.view_as_real(x_half[..., idx]).flatten(-2)
            g_val = (g_band * selected).sum(dim=0).unflatten(-1, (-1, 2))
        recycled.give(y, r, s)
        return g_x, None, g_val, None, None, None, None, None


def _modulus_gradient(grad: Tensor, m: int, buffer: Optional[HalfSpectrumBuffer]) -> Tensor:
    """The gradient of the real moduli (length m) from that of their first ``grad.shape[-1]`` bins."""
    full = m // 2 + 1
    if grad.shape[-1] == full:
        return rfft_adjoint(grad, m)
    bins = grad.shape[-1]
    half = buffer.take(bins) if buffer is not None else grad.new_zeros(grad.shape[:-1] + (full,))
    torch.mul(grad, 0.5, out=half[..., :bins])  # see rfft_adjoint: bin 0 stands for itself only
    half[..., 0] = grad[..., 0]
    return planned_fft.irfft(half, n=m, norm="forward", out=recycled.take(half.shape[:-1] + (m,), grad.real.dtype, half))


def checked_bins(bins: Optional[int], m: int) -> int:
    """The bins kept of half spectra of length-m signals: ``bins``, or all (m // 2 + 1) when None."""
    full = m // 2 + 1
    if bins is None:
        return full
    if not 1 <= bins <= full:
        raise ValueError(f"bins must be in [1, {full}], got {bins}")
    return bins


def zero_padded_buffer(x_half: Tensor, n_filters: int, m: int, length: int) -> Tensor:
    """An empty complex ``(batch, n_filters, m)`` buffer whose bins from ``length`` on are zero."""
    y = x_half.new_empty(x_half.shape[0], n_filters, m)
    y.narrow(-1, length, m - length).zero_()
    return y


def wavelet_modulus_spectrum(x_half: Tensor, idx: Tensor, val: Tensor, m: int,
                             workspace: Optional[Tensor] = None, grad_buffer: Optional[HalfSpectrumBuffer] = None,
                             bins: Optional[int] = None) -> Tensor:
    """``rfft(|ifft_m(band)|)[..., :bins]`` for wavelets stored on one run of bins.

    Args:
        x_half: half spectra of real signals, complex (batch, 1, n // 2 + 1).
        idx: (L,) bins of the half spectrum the run reads.
        val: (n_filters, L, 2) multipliers of the (re, im) parts (the
            wavelets, with the sign of mirrored bins folded in, see
            :class:`~scrapl_graph.jtfs.bandlimited.BandLimitedBank`).
        m: length of the inverse transform (the signal length at this resolution).
        workspace: a :func:`zero_padded_buffer` for these shapes, to write the band product into
            (its bins from L on must stay zero); default: a new one.
        grad_buffer: a kept buffer of (batch, n_filters, m // 2 + 1) for the backward of a cut
            output; default: a new one at each backward.
        bins: the bins kept (default: all, m // 2 + 1).

    Returns:
        Complex (batch, n_filters, bins): the first bins of the half spectra of the moduli.
    """
    bins = checked_bins(bins, m)
    # Whether autograd records the node (its buffers are then kept for the backward pass).
    recorded = torch.is_grad_enabled() and (x_half.requires_grad or val.requires_grad)
    return _WaveletModulus.apply(x_half, idx, val, m, workspace, grad_buffer, bins, recorded)
