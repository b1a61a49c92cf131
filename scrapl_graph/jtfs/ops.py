"""Pure tensor operations of the scattering transform (no state, no filters of their own)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import native, planned_fft


def magnitude(z: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """|z| of complex z, without autograd bookkeeping (the forward of :func:`modulus`), into ``out`` if given.

    sqrt(re^2 + im^2) on the (re, im) view is much faster than complex abs
    (which guards against overflow that audio magnitudes never reach); on CPUs
    in one pass (:mod:`.native`) where the fused kernels are available.
    """
    if native.usable(z) and (out is None or native.usable(out)):
        return native.magnitude(z, out)
    v = torch.view_as_real(z)
    r = torch.mul(v[..., 0], v[..., 0], out=out)
    return r.addcmul_(v[..., 1], v[..., 1]).sqrt_()


def scale_parts(z: Tensor, val: Tensor) -> Tensor:
    """Complex z whose real and imaginary parts are multiplied by ``val[..., 0]`` and ``val[..., 1]``.

    Args:
        z: complex (..., L), broadcasting against ``val``'s leading axes.
        val: real (..., L, 2) with contiguous (L, 2) axes.

    On the (re, im) view flattened to one axis of 2L: with a trailing axis of 2 the
    elementwise kernels do not vectorize on CPUs (several times slower).
    """
    flat = torch.view_as_real(z).flatten(-2) * val.flatten(-2)
    return torch.view_as_complex(flat.unflatten(-1, (-1, 2)))


def interleaved(s: Tensor) -> Tensor:
    """Real s (..., n) as (s, s) pairs (..., n, 2): a factor for both parts of a complex tensor's (re, im) view.

    Multiplying by this flat is faster than broadcasting s over the trailing (re, im) axis, an
    unvectorized kernel on CPUs, even with the copy; ``torch.complex`` makes it faster than ``stack``.
    """
    return torch.view_as_real(torch.complex(s, s))


class _GatherBins(torch.autograd.Function):
    """``x[..., idx]``, whose backward scatters with ``index_add`` along the last axis.

    Advanced indexing's own backward (``index_put`` with accumulation) is about
    twice slower on CPUs, and ``index_select``'s forward several times slower.
    """

    @staticmethod
    def forward(ctx, x: Tensor, idx: Tensor) -> Tensor:
        ctx.save_for_backward(idx)
        ctx.length = x.shape[-1]
        return x[..., idx]

    @staticmethod
    def backward(ctx, grad: Tensor):
        idx, = ctx.saved_tensors
        zeros = grad.new_zeros(grad.shape[:-1] + (ctx.length,))
        # Out of place when the backward is itself differentiated (theta-IS Hessian-vector products).
        scattered = zeros.index_add(-1, idx, grad) if torch.is_grad_enabled() else zeros.index_add_(-1, idx, grad)
        return scattered, None


def gather_bins(x: Tensor, idx: Tensor) -> Tensor:
    """``x[..., idx]`` (differentiable, see :class:`_GatherBins`)."""
    return _GatherBins.apply(x, idx)


def is_fake(t: Tensor) -> bool:
    """Whether ``t`` is a fake tensor (``FakeTensorMode``: shapes and devices without data)."""
    return isinstance(t, torch._subclasses.fake_tensor.FakeTensor)


def is_batched(t: Tensor) -> bool:
    """Whether ``t`` is a vmapped tensor (batched gradients, ``is_grads_batched=True``: theta-IS).

    The fused backward passes write into buffers they allocate themselves, which vmap refuses
    when the incoming gradient is batched: they then differentiate their composed definition.
    """
    functorch = torch._C._functorch
    return functorch.is_batchedtensor(t) or functorch.is_legacy_batchedtensor(t)


def modulus_floor(dtype: torch.dtype) -> float:
    """Floor of |z| in d|z|/dz = z / |z|: tiny^(1/4), 1e-10 in float32 and 1e-77 in float64.

    Magnitudes below it are rounding noise; flooring there keeps the first
    derivative 0 (not NaN) at z = 0 and the second one finite.
    """
    return torch.finfo(dtype).tiny ** 0.25


def rfft_adjoint(grad: Tensor, n: int) -> Tensor:
    """Gradient of a real signal of length n from the gradient ``grad`` of its half spectrum.

    ``u_grad[t] = Re(sum_k G[k] exp(2i pi k t / n))`` over the kept bins
    ``k = 0 .. n/2``, i.e. the unnormalized inverse of the Hermitian spectrum
    ``H = G / 2``, except ``H = G`` at ``k = 0`` and ``k = n/2``.
    """
    # A scalar multiply, then two columns fixed: a per-bin weight broadcast over (re, im) is a slow,
    # unvectorized kernel on CPUs.
    return planned_fft.irfft(planned_fft.scale_inner_bins(grad, n, 0.5), n=n, norm="forward")


class _Modulus(torch.autograd.Function):
    """|z| for complex z, with gradient 0 at z = 0 instead of NaN.

    The backward is written with differentiable operations, so that second
    derivatives (Hessian-vector products for theta-IS) stay finite too.
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        r = magnitude(z)
        ctx.save_for_backward(z, r)
        return r

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        z, r = ctx.saved_tensors
        floor = modulus_floor(r.dtype)
        if not torch.is_grad_enabled():
            # First derivative only: z / max(|z|, floor) is already 0 where z = 0.
            scale = grad / r.clamp_min(floor)
            return torch.view_as_complex(torch.view_as_real(z) * interleaved(scale))
        # d|z|/dz = z / |z|, taken as 0 at z = 0. The second derivative grows
        # like 1/|z|^2: the floor keeps it finite, and the where makes it 0 at
        # z = 0, not NaN.
        scale = (grad / r.clamp_min(floor)).masked_fill_(r == 0, 0.0)
        return torch.view_as_complex(torch.view_as_real(z) * scale.unsqueeze(-1))


class _RealFFT(torch.autograd.Function):
    """``torch.fft.rfft`` along the last axis, with a backward that stays real and half-sized.

    The backward is :func:`rfft_adjoint`; the generic one instead builds a
    full complex spectrum of zeros and runs a complex inverse FFT. (Where
    plans are kept, :func:`.planned_fft.rfft` has the same backward.)
    """

    @staticmethod
    def forward(ctx, u: Tensor) -> Tensor:
        ctx.n = u.shape[-1]
        return torch.fft.rfft(u)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return rfft_adjoint(grad, ctx.n)


def rfft(u: Tensor) -> Tensor:
    """Half spectrum of real signals along the last axis (``torch.fft.rfft``), with a leaner backward."""
    return planned_fft.rfft(u) if planned_fft.usable(u) else _RealFFT.apply(u)


def modulus(z: Tensor) -> Tensor:
    """Complex modulus, safe at zero for first and second derivatives."""
    return _Modulus.apply(z)


def real_inverse(u_hat: Tensor) -> Tensor:
    """Inverse DFT of a Hermitian spectrum (of a real signal) along the last axis, from its first half."""
    m = u_hat.shape[-1]
    return planned_fft.irfft(u_hat[..., : m // 2 + 1], n=m)


def frequential_operator(n_padded: int, n_in: int, h, factor: int) -> Tensor:
    """Matrix of: zero-pad ``n_in`` samples to ``n_padded``, filter by ``h`` (Fourier), subsample by ``factor``.

    Args:
        h: the filter on the ``n_padded`` bins (array or tensor; differentiable as a float64 tensor).

    Returns:
        Complex128 tensor (n_padded // factor, n_in); column i is the response
        to the i-th unit impulse, computed with FFTs.
    """
    h = torch.as_tensor(h, dtype=torch.float64)
    impulses = torch.eye(n_padded, dtype=torch.complex128, device=h.device)[:, :n_in]
    spectrum = torch.fft.fft(impulses, dim=0) * h[:, None]
    periodized = spectrum.reshape(factor, n_padded // factor, n_in).mean(dim=0)
    return torch.fft.ifft(periodized, dim=0)
