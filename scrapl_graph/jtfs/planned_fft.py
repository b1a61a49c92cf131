r"""FFTs along the last axis with plans kept between calls: MKL through torch's own copy, on CPUs.

On a CPU, ``torch.fft`` hands each call to MKL with a new plan (a DFTI
descriptor, created and committed, then freed). Committing a plan computes
its twiddle factors and picks its kernels: about 1.2 ms for a length of
65536 and 0.6 ms for 32768 on a 2-core Xeon, against 2 ms for the transform
itself of a batch of 40. A SCRAPL step calls a dozen such transforms, so
the plans cost about a fifth of a step. Here each plan is committed once
per (kind, length, batch, dtype, scale, placement, thread count) and kept,
per thread, in a small least-recently-used cache; the transforms are MKL's,
bit for bit those of ``torch.fft`` (the same library and configuration).

The functions below are differentiable to any order (the backward of each
transform is another of them, the adjoint) and take PyTorch's path instead
where no plan can be made: without MKL in torch (other platforms), on other
devices, for fake or vmapped tensors, for other dtypes, or with
``SCRAPL_GRAPH_NATIVE=0``. The normalizations are torch's: ``norm`` is
``"backward"`` (the inverse scaled by 1/n), ``"forward"`` (the forward
scaled by 1/n) or ``"ortho"``.

Adjoints, for a transform scaled by ``s`` (the gradients of complex tensors are
conjugate Wirtinger derivatives, as in PyTorch):

- complex, one direction: the other direction with the same ``s``;
- real to half spectrum: the half spectrum to real with the same ``s``, after
  halving every bin but 0 and n/2 (those stand for themselves only);
- half spectrum to real: the real to half spectrum with the same ``s``, then
  every bin but 0 and n/2 doubled.
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
from collections import OrderedDict
from typing import Optional

import torch
from torch import Tensor

from .native import ENV_VAR

#: Plans kept per thread (each holds tables of about the transform's length, 1-2 MB at 65536); the full
#: tree of the paper's configuration uses 47.
CACHE_SIZE = 128
#: Shorter transforms go to torch.fft: their plans commit in microseconds, less than a call through here.
MIN_LENGTH = 1024

# Configuration parameters and values of MKL's DFTI interface (mkl_dfti.h).
_NUMBER_OF_TRANSFORMS, _PLACEMENT, _INPUT_DISTANCE, _OUTPUT_DISTANCE = 7, 11, 14, 15
_FORWARD_SCALE, _BACKWARD_SCALE, _CONJUGATE_EVEN_STORAGE = 4, 5, 10
_COMPLEX, _REAL, _COMPLEX_COMPLEX, _INPLACE, _NOT_INPLACE = 32, 33, 39, 43, 44

_REAL_DTYPES = {torch.float32: "s", torch.float64: "d"}
_COMPLEX_DTYPES = {torch.complex64: "s", torch.complex128: "d"}

_state: dict = {}
_lock = threading.Lock()
_local = threading.local()


def _mkl() -> Optional[ctypes.CDLL]:
    """torch's MKL, where its DFTI functions are exported (Linux builds with MKL), else None."""
    if "mkl" not in _state:
        with _lock:
            if "mkl" not in _state:
                lib = None
                # MKL_LONG is a C long on Linux (LP64); elsewhere torch uses pocketfft or another ABI.
                if sys.platform.startswith("linux") and torch.backends.mkl.is_available():
                    try:
                        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
                        for name in ("DftiCreateDescriptor_s_1d", "DftiCreateDescriptor_d_1d", "DftiSetValue",
                                     "DftiCommitDescriptor", "DftiComputeForward", "DftiComputeBackward",
                                     "DftiFreeDescriptor"):
                            getattr(lib, name).restype = ctypes.c_long
                    except (OSError, AttributeError):
                        lib = None
                _state["mkl"] = lib
    return _state["mkl"]


class _Plan:
    """A committed DFTI descriptor; freed with the object."""

    def __init__(self, mkl: ctypes.CDLL, precision: str, domain: int, n: int, batch: int, in_distance: int,
                 out_distance: int, scale: float, forward: bool, in_place: bool):
        self._mkl, self.handle = mkl, ctypes.c_void_p()
        create = getattr(mkl, f"DftiCreateDescriptor_{precision}_1d")
        self._check(create(ctypes.byref(self.handle), ctypes.c_int(domain), ctypes.c_long(n)), "create")
        settings = [(_NUMBER_OF_TRANSFORMS, ctypes.c_long(batch)),
                    (_PLACEMENT, ctypes.c_int(_INPLACE if in_place else _NOT_INPLACE)),
                    (_INPUT_DISTANCE, ctypes.c_long(in_distance)), (_OUTPUT_DISTANCE, ctypes.c_long(out_distance))]
        if domain == _REAL:
            settings.append((_CONJUGATE_EVEN_STORAGE, ctypes.c_int(_COMPLEX_COMPLEX)))
        if scale != 1.0:
            # Varargs promote floats to double, which MKL reads for either precision.
            settings.append((_FORWARD_SCALE if forward else _BACKWARD_SCALE, ctypes.c_double(scale)))
        for param, value in settings:
            self._check(mkl.DftiSetValue(self.handle, ctypes.c_int(param), value), "configure")
        self._check(mkl.DftiCommitDescriptor(self.handle), "commit")
        self.compute = mkl.DftiComputeForward if forward else mkl.DftiComputeBackward

    def _check(self, status: int, step: str) -> None:
        if status != 0:
            raise RuntimeError(f"MKL could not {step} an FFT plan (status {status})")

    def __del__(self):
        if self.handle:
            self._mkl.DftiFreeDescriptor(ctypes.byref(self.handle))
            self.handle = ctypes.c_void_p()


def _plans() -> OrderedDict:
    cache = getattr(_local, "plans", None)
    if cache is None or getattr(_local, "pid", None) != os.getpid():  # a forked child starts afresh
        cache = _local.plans = OrderedDict()
        _local.pid = os.getpid()
    return cache


def _plan(kind: str, precision: str, n: int, batch: int, scale: float, in_place: bool) -> _Plan:
    key = (kind, precision, n, batch, scale, in_place, torch.get_num_threads())
    cache = _plans()
    plan = cache.get(key)
    if plan is None:
        half = n // 2 + 1
        if kind == "r2c":
            args = (_REAL, n, batch, n, half, scale, True)
        elif kind == "c2r":
            args = (_REAL, n, batch, half, n, scale, False)
        else:
            args = (_COMPLEX, n, batch, n, n, scale, kind == "c2c_forward")
        plan = cache[key] = _Plan(_mkl(), precision, *args, in_place=in_place)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return plan


def available() -> bool:
    """Whether this process keeps plans for CPU transforms (MKL in torch, and not switched off)."""
    return os.environ.get(ENV_VAR, "1") != "0" and _mkl() is not None


def usable(t: Tensor, n: Optional[int] = None) -> bool:
    """Whether transforms of ``t`` (of length n, default its last axis) run with kept plans (else torch.fft)."""
    if t.device.type != "cpu" or type(t) is not torch.Tensor or t.numel() == 0:
        return False
    if (t.shape[-1] if n is None else n) < MIN_LENGTH:
        return False
    if t.dtype not in _REAL_DTYPES and t.dtype not in _COMPLEX_DTYPES:
        return False
    functorch = torch._C._functorch
    if functorch.is_functorch_wrapped_tensor(t) or functorch.is_legacy_batchedtensor(t):
        return False  # vmapped (batched gradients): torch.fft has the batching rules
    return available()


def _scale(norm: Optional[str], n: int, forward: bool) -> float:
    """The factor of a transform of length n in direction ``forward``, under torch's ``norm`` names."""
    norm = norm or "backward"
    if norm == "ortho":
        return 1.0 / math.sqrt(n)
    if norm not in ("backward", "forward"):
        raise ValueError(f"norm must be 'backward', 'forward' or 'ortho', got {norm!r}")
    return 1.0 / n if (norm == "forward") == forward else 1.0


def execute(kind: str, x: Tensor, scale: float, n: Optional[int] = None, out: Optional[Tensor] = None) -> Tensor:
    """Run one transform along the last axis of contiguous ``x`` with a kept plan (no autograd).

    Args:
        kind: ``"c2c_forward"``, ``"c2c_backward"``, ``"r2c"`` or ``"c2r"``.
        scale: factor applied to the result.
        n: the real length of a ``"c2r"`` transform (``x`` holds n // 2 + 1 bins).
        out: where to write (``x`` itself for a complex transform in place); default: a new tensor.
    """
    length = x.shape[-1]
    if kind == "c2r":
        n = 2 * (length - 1) if n is None else n
        if length != n // 2 + 1:
            raise ValueError(f"a real inverse of length {n} needs {n // 2 + 1} bins, got {length}")
        shape, dtype = x.shape[:-1] + (n,), x.real.dtype
    elif kind == "r2c":
        n, shape, dtype = length, x.shape[:-1] + (length // 2 + 1,), _complex_of(x.dtype)
    else:
        n, shape, dtype = length, x.shape, x.dtype
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=x.device)
    elif out.shape != shape or out.dtype != dtype or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous {dtype} tensor of shape {tuple(shape)}")
    x = x.resolve_conj().resolve_neg().contiguous()  # MKL reads the memory: lazy conjugations applied first
    precision = (_REAL_DTYPES if kind == "r2c" else _COMPLEX_DTYPES)[x.dtype]
    in_place = out.data_ptr() == x.data_ptr()
    plan = _plan(kind, precision, n, x.numel() // length, scale, in_place)
    pointers = (ctypes.c_void_p(x.data_ptr()),) if in_place else (ctypes.c_void_p(x.data_ptr()),
                                                                   ctypes.c_void_p(out.data_ptr()))
    status = plan.compute(plan.handle, *pointers)
    if status != 0:
        raise RuntimeError(f"MKL FFT failed (status {status})")
    return out


def scale_inner_bins(t: Tensor, n: int, factor: float) -> Tensor:
    """Half spectra ``t`` of length-n signals times ``factor``, except bins 0 and n/2 (n even), kept as they are.

    The real transforms' adjoints: those two bins stand for themselves only, every other for itself and
    its mirror.
    """
    scaled = t * factor
    scaled[..., 0] = t[..., 0]
    if n % 2 == 0:
        scaled[..., -1] = t[..., -1]
    return scaled


class _ComplexFFT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, forward: bool, scale: float) -> Tensor:
        ctx.forward, ctx.scale = forward, scale
        return execute("c2c_forward" if forward else "c2c_backward", z, scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _c2c(grad, not ctx.forward, ctx.scale), None, None


class _RealFFT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.n, ctx.scale = x.shape[-1], scale
        return execute("r2c", x, scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _c2r(scale_inner_bins(grad, ctx.n, 0.5), ctx.n, ctx.scale), None


class _RealInverseFFT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_half: Tensor, n: int, scale: float) -> Tensor:
        ctx.n, ctx.scale = n, scale
        return execute("c2r", x_half, scale, n=n)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return scale_inner_bins(_r2c(grad, ctx.scale), ctx.n, 2.0), None, None


def _norm(scale: float, n: int, forward: bool) -> str:
    """torch's name of the normalization that scales a transform of length n by ``scale``."""
    for name in ("backward", "forward", "ortho"):
        if _scale(name, n, forward) == scale:
            return name
    raise ValueError(f"no normalization scales a transform of length {n} by {scale}")


# The adjoints, each in the other's backward.
def _c2c(z: Tensor, forward: bool, scale: float) -> Tensor:
    if usable(z) and z.is_complex():
        return _ComplexFFT.apply(z, forward, scale)
    transform = torch.fft.fft if forward else torch.fft.ifft
    return transform(z, norm=_norm(scale, z.shape[-1], forward))


def _r2c(x: Tensor, scale: float) -> Tensor:
    if usable(x) and not x.is_complex():
        return _RealFFT.apply(x, scale)
    return torch.fft.rfft(x, norm=_norm(scale, x.shape[-1], True))


def _c2r(x_half: Tensor, n: int, scale: float) -> Tensor:
    if usable(x_half, n) and x_half.is_complex() and x_half.shape[-1] == n // 2 + 1:
        return _RealInverseFFT.apply(x_half, n, scale)
    return torch.fft.irfft(x_half, n=n, norm=_norm(scale, n, False))


def _resized(z: Tensor, n: Optional[int]) -> Tensor:
    """z zero-padded or cut to n samples on its last axis, as torch.fft does with ``n``."""
    if n is None or n == z.shape[-1]:
        return z
    return z[..., :n] if n < z.shape[-1] else torch.nn.functional.pad(z, (0, n - z.shape[-1]))


def fft(z: Tensor, n: Optional[int] = None, norm: Optional[str] = None) -> Tensor:
    """``torch.fft.fft(z, n=n, norm=norm)`` along the last axis."""
    if not usable(z, n):
        return torch.fft.fft(z, n=n, norm=norm)
    z = _resized(z if z.is_complex() else z.to(_complex_of(z.dtype)), n)
    return _ComplexFFT.apply(z, True, _scale(norm, z.shape[-1], True))


def ifft(z: Tensor, n: Optional[int] = None, norm: Optional[str] = None, out: Optional[Tensor] = None) -> Tensor:
    """``torch.fft.ifft(z, n=n, norm=norm, out=out)`` along the last axis (no autograd with ``out``)."""
    if not usable(z, n):
        return torch.fft.ifft(z, n=n, norm=norm, out=out)
    z = _resized(z if z.is_complex() else z.to(_complex_of(z.dtype)), n)
    if out is not None:
        return execute("c2c_backward", z, _scale(norm, z.shape[-1], False), out=out)
    return _ComplexFFT.apply(z, False, _scale(norm, z.shape[-1], False))


def fft_in_place(z: Tensor, norm: Optional[str] = None) -> Tensor:
    """``torch.fft.fft(z, norm=norm)``, written over z where plans are kept (else a new tensor); no autograd.

    For buffers no longer needed, such as a gradient in a backward pass: no new memory.
    """
    if usable(z) and z.is_complex() and z.is_contiguous() and not z.is_conj() and not z.is_neg():
        return execute("c2c_forward", z, _scale(norm, z.shape[-1], True), out=z)
    return torch.fft.fft(z, norm=norm)


def rfft(x: Tensor, norm: Optional[str] = None, out: Optional[Tensor] = None) -> Tensor:
    """``torch.fft.rfft(x, norm=norm, out=out)`` along the last axis (no autograd with ``out``)."""
    if not usable(x) or x.is_complex():
        return torch.fft.rfft(x, norm=norm, out=out)
    if out is not None:
        return execute("r2c", x, _scale(norm, x.shape[-1], True), out=out)
    return _RealFFT.apply(x, _scale(norm, x.shape[-1], True))


def irfft(x_half: Tensor, n: Optional[int] = None, norm: Optional[str] = None, out: Optional[Tensor] = None
          ) -> Tensor:
    """``torch.fft.irfft(x_half, n=n, norm=norm, out=out)`` along the last axis (no autograd with ``out``)."""
    n = 2 * (x_half.shape[-1] - 1) if n is None else n
    if not usable(x_half, n) or not x_half.is_complex() or x_half.shape[-1] != n // 2 + 1:
        return torch.fft.irfft(x_half, n=n, norm=norm, out=out)
    if out is not None:
        return execute("c2r", x_half, _scale(norm, n, False), n=n, out=out)
    return _RealInverseFFT.apply(x_half, n, _scale(norm, n, False))


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex64 if dtype == torch.float32 else torch.complex128
