"""Pure tensor operations of the scattering transform (no state, no filters of their own)."""
from __future__ import annotations

import torch
from torch import Tensor


class _Modulus(torch.autograd.Function):
    """|z| for complex z, with gradient 0 at z = 0 instead of NaN.

    The backward is written with differentiable operations, so that second
    derivatives (Hessian-vector products for theta-IS) stay finite too.
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        ctx.save_for_backward(z)
        return z.abs()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (z,) = ctx.saved_tensors
        r = z.abs()
        nonzero = r > 0
        # Two wheres: the outer one zeroes the result, the inner one keeps
        # 1/r finite so that its own derivative is not 0 * inf.
        inv = torch.where(nonzero, 1.0 / torch.where(nonzero, r, torch.ones_like(r)), torch.zeros_like(r))
        return grad * z * inv


def modulus(z: Tensor) -> Tensor:
    """Complex modulus, safe at zero for first and second derivatives."""
    return _Modulus.apply(z)


def full_spectrum(u: Tensor, dim: int = -1) -> Tensor:
    """DFT of a real signal along ``dim`` computed with a real FFT, both halves.

    The length along ``dim`` must be even.
    """
    n = u.shape[dim]
    half = torch.fft.rfft(u, dim=dim)
    mirror = half.narrow(dim, 1, n // 2 - 1).flip(dim).conj()
    return torch.cat([half, mirror], dim=dim)


def periodize(u_hat: Tensor, factor: int, dim: int = -1) -> Tensor:
    """Subsample by ``factor`` in time, done in Fourier: the mean of the spectrum's blocks."""
    if factor == 1:
        return u_hat
    dim = dim % u_hat.ndim
    n = u_hat.shape[dim]
    return u_hat.unflatten(dim, (factor, n // factor)).mean(dim)


def lowpass(u: Tensor, phi: Tensor, factor: int, dim: int = -1) -> Tensor:
    """Real signal ``u`` convolved with a symmetric low-pass ``phi`` (given in Fourier) and subsampled by ``factor``.

    Args:
        u: real tensor; ``dim`` has the length of ``phi``.
        phi: real, even filter of shape (length,).
        factor: power of two dividing the length.
        dim: axis to filter.

    Returns:
        Real tensor with ``length // factor`` samples along ``dim``.
    """
    dim = dim % u.ndim
    shape = [1] * u.ndim
    shape[dim] = -1
    u_hat = periodize(full_spectrum(u, dim) * phi.view(shape), factor, dim)
    m = u_hat.shape[dim]
    # phi is even, so the product stays Hermitian and its real inverse is exact.
    return torch.fft.irfft(u_hat.narrow(dim, 0, m // 2 + 1), n=m, dim=dim)
