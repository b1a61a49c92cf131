r"""Two fused elementwise kernels of the wavelet modulus, compiled from C on first use (CPUs only).

On a CPU the first-order modulus of a SCRAPL step is bound by passes over
memory, and PyTorch's eager kernels make several where one suffices, since
a complex tensor's (re, im) pairs are interleaved:

- the magnitude ``r = sqrt(re^2 + im^2)`` reads the pairs with a stride of
  two, which the elementwise kernels do not vectorize (three passes: square,
  multiply-add, square root);
- the backward's scaling ``y <- y * s / max(r, floor)`` needs the ratio, then
  an interleaved copy of it (a flat product is the fast one), then the
  product: three passes and two fresh buffers of the size of ``y``.

Here each is one loop over the data, in place where it can be, split across
torch's CPU threads. The C source below is compiled with the system's C
compiler into a per-user cache the first time a CPU tensor needs it (about
0.2 s) and loaded with ctypes; its calls release the GIL.

The loops are split by OpenMP, linked to the OpenMP runtime torch itself has
loaded (its ``libgomp``), so that they run on the threads that torch's and
MKL's parallel regions have just used, instead of waking threads of their
own while those still spin: right after an FFT, the magnitude of the
highest octave takes 1.2 ms this way against 2.0-2.4 ms with a Python pool.
Where torch runs on another threading runtime, or the compiler has no
OpenMP, the kernels are built without it and a Python thread pool splits
their calls in blocks.

Without a compiler, on other devices, for fake or batched tensors, or with
``SCRAPL_GRAPH_NATIVE=0``, the callers use PyTorch's operations, which
compute the same values (up to the last bit of a square root).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import sysconfig
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import torch
from torch import Tensor

log = logging.getLogger(__name__)

ENV_VAR = "SCRAPL_GRAPH_NATIVE"

_SOURCE = r"""
#include <math.h>
#include <stddef.h>

/* Threads only from MIN_SPLIT elements on (set at compile time): below, starting them costs more than
   they save. */
#define SPLIT(n) if ((n) >= MIN_SPLIT) num_threads(threads) schedule(static)

#define KERNELS(T, SQRT, SUFFIX)                                                         \
void magnitude_##SUFFIX(const T *y, T *r, ptrdiff_t n, int threads) {                    \
    _Pragma("omp parallel for SPLIT(n)")                                                 \
    for (ptrdiff_t i = 0; i < n; i++) {                                                  \
        T a = y[2 * i], b = y[2 * i + 1];                                                \
        r[i] = SQRT(a * a + b * b);                                                      \
    }                                                                                    \
}                                                                                        \
void scale_by_ratio_##SUFFIX(T *y, const T *s, const T *r, T floor_, ptrdiff_t n,        \
                             int threads) {                                              \
    _Pragma("omp parallel for SPLIT(n)")                                                 \
    for (ptrdiff_t i = 0; i < n; i++) {                                                  \
        T f = s[i] / (r[i] > floor_ ? r[i] : floor_);                                    \
        y[2 * i] *= f;                                                                   \
        y[2 * i + 1] *= f;                                                               \
    }                                                                                    \
}

KERNELS(float, sqrtf, f32)
KERNELS(double, sqrt, f64)

int split_by_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
"""

#: Elements below which one thread does the whole loop (splitting costs more than it saves); in the C
#: source too, as MIN_SPLIT.
_MIN_SPLIT = 1 << 16

_lock = threading.Lock()
_state: dict = {}


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "scrapl_graph")


def _torch_openmp() -> Optional[str]:
    """The GNU OpenMP runtime torch has loaded (a path), or None (another runtime, or not Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libgomp" in line}
    except OSError:
        return None
    return sorted(paths)[0] if len(paths) == 1 else None


def _compile(path: str, openmp: Optional[str]) -> None:
    """Build the kernels into ``path``; with OpenMP linked to the runtime file ``openmp`` where given."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
        source = os.path.join(tmp, "kernels.c")
        with open(source, "w") as f:
            f.write(_SOURCE)
        built = os.path.join(tmp, "kernels.so")
        # No contraction into fused multiply-adds: the same roundings as PyTorch's separate operations.
        flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", f"-DMIN_SPLIT={_MIN_SPLIT}"]

        def run(*args):
            subprocess.run([compiler, *args], check=True, capture_output=True, timeout=120)

        def built_with_openmp() -> bool:
            if openmp is None:
                return False
            try:
                # Compiled with OpenMP, linked to torch's runtime file rather than the compiler's: the
                # library then names that runtime, already loaded, and does not bring a second one.
                run(*flags, "-fopenmp", "-c", source, "-o", source + ".o")
                run("-shared", source + ".o", openmp, "-o", built)
                return True
            except (OSError, subprocess.SubprocessError):
                return False

        if not built_with_openmp():
            run(*flags, "-shared", source, "-o", built)
        os.replace(built, path)  # atomic: concurrent processes never load a half-written library


def _library() -> Optional[ctypes.CDLL]:
    """The compiled kernels, or None where they cannot be built (then callers use PyTorch)."""
    if "lib" in _state:
        return _state["lib"]
    with _lock:
        if "lib" not in _state:
            lib = None
            openmp = _torch_openmp()
            digest = hashlib.sha256((_SOURCE + str(openmp) + str(_MIN_SPLIT)).encode()).hexdigest()[:16]
            # The machine in the name: a home directory may be shared between architectures.
            path = os.path.join(_cache_dir(), f"modulus-kernels-{platform.machine()}-{digest}.so")
            try:
                if not os.path.exists(path):
                    _compile(path, openmp)
                lib = ctypes.CDLL(path)
                p, n, i = ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int
                for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
                    getattr(lib, f"magnitude_{suffix}").argtypes = [p, p, n, i]
                    getattr(lib, f"scale_by_ratio_{suffix}").argtypes = [p, p, p, real, n, i]
                _state["openmp"] = bool(lib.split_by_openmp())
            except (OSError, subprocess.SubprocessError, ValueError, AttributeError) as error:
                log.info("fused modulus kernels unavailable (%s): using PyTorch's operations", error)
                lib = None
            _state["lib"] = lib
    return _state["lib"]


def usable(*tensors: Tensor) -> bool:
    """Whether the kernels can run on these tensors: contiguous CPU tensors with real data, kernels built."""
    if os.environ.get(ENV_VAR, "1") == "0":
        return False
    for t in tensors:
        if t.device.type != "cpu" or not t.is_contiguous() or t.requires_grad and torch.is_grad_enabled():
            return False
        functorch = torch._C._functorch
        if (type(t) is not torch.Tensor or functorch.is_functorch_wrapped_tensor(t)
                or functorch.is_legacy_batchedtensor(t)):
            return False  # fake, vmapped (batched gradients) or other wrapped tensors have no data to read
    return _library() is not None


def _forget_pool() -> None:
    # A forked child (a data-loader worker) inherits the pool without its threads.
    _state.pop("pool", None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    if "pool" not in _state:
        with _lock:
            if "pool" not in _state:
                _state["pool"] = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                                    thread_name_prefix="scrapl-graph-kernels")
    return _state["pool"]


def _run(kernel, count: int, pointers, strides, scalars=()) -> None:
    """Call ``kernel(*pointers, *scalars, items, threads)`` over ``count`` items on torch's CPU threads.

    Built with OpenMP, the kernel splits itself; otherwise the call is split here in one block per
    thread (not below :data:`_MIN_SPLIT` items a block). ``strides`` are the bytes from one item to
    the next behind each pointer.
    """
    threads = torch.get_num_threads()
    if _state.get("openmp"):
        kernel(*pointers, *scalars, count, threads)
        return
    blocks = max(1, min(threads, count // _MIN_SPLIT))
    bounds = [count * k // blocks for k in range(blocks + 1)]

    def block(k):
        start = bounds[k]
        kernel(*(p + start * stride for p, stride in zip(pointers, strides)), *scalars, bounds[k + 1] - start, 1)

    futures = [_pool().submit(block, k) for k in range(1, blocks)]
    block(0)
    for future in futures:
        future.result()


def _suffix(t: Tensor) -> str:
    return "f32" if t.dtype in (torch.float32, torch.complex64) else "f64"


def magnitude(z: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """|z| of a complex tensor ``z`` for which :func:`usable` holds, in one pass (into ``out`` if given)."""
    r = torch.empty(z.shape, dtype=z.real.dtype, device=z.device) if out is None else out
    if r.shape != z.shape or r.dtype != z.real.dtype or not r.is_contiguous():
        raise ValueError(f"out must be a contiguous {z.real.dtype} tensor of shape {tuple(z.shape)}")
    size = r.element_size()
    _run(getattr(_library(), f"magnitude_{_suffix(z)}"), z.numel(), (z.data_ptr(), r.data_ptr()), (2 * size, size))
    return r


def scale_by_ratio_(y: Tensor, s: Tensor, r: Tensor, floor: float) -> Tensor:
    """``y <- y * s / max(r, floor)`` in place, for complex ``y`` and real ``s``, ``r`` of its shape.

    The same roundings as ``y * interleaved(s / r.clamp_min(floor))``, so a backward that
    recomputes with PyTorch's operations gives the same bits.
    """
    size = s.element_size()
    _run(getattr(_library(), f"scale_by_ratio_{_suffix(s)}"), y.numel(), (y.data_ptr(), s.data_ptr(), r.data_ptr()),
         (2 * size, size, size), scalars=(floor,))
    return y
