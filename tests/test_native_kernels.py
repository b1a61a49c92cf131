"""The fused modulus kernels compiled from C: the same values as PyTorch's operations, and a clean fallback."""
import os

import pytest
import torch

from scrapl_graph.jtfs import native
from scrapl_graph.jtfs.ops import interleaved, magnitude
from scrapl_graph.jtfs.wavelet_modulus import wavelet_modulus_spectrum

pytestmark = pytest.mark.skipif(native._library() is None, reason="no C compiler: PyTorch's operations are used")


def torch_magnitude(z):
    v = torch.view_as_real(z)
    return v[..., 0].square().addcmul_(v[..., 1], v[..., 1]).sqrt_()


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("shape", [(3,), (2, 5, 1000), (4, 3, 70000)])  # one block, and split over threads
def test_magnitude_equals_the_composed_operations(dtype, shape):
    z = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    z[..., 0] = 0
    assert native.usable(z)
    r = native.magnitude(z)
    torch.testing.assert_close(r, torch_magnitude(z), rtol=2 * torch.finfo(r.dtype).eps, atol=0)
    assert torch.equal(r[..., 0], torch.zeros_like(r[..., 0]))


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("shape", [(2, 5, 1000), (4, 3, 70000)])
def test_scale_by_ratio_gives_the_bits_of_the_composed_operations(dtype, shape):
    # Bit for bit: a second backward through the composed definition must repeat the first.
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(shape, dtype=dtype, generator=gen)
    s = torch.randn(shape, dtype=y.real.dtype, generator=gen)
    r = torch_magnitude(y)
    y[..., :3], r[..., :3] = 0, 0  # the floor keeps 0 / 0 out: the gradient is 0 there
    floor = 1e-10
    expected = torch.view_as_complex(torch.view_as_real(y) * interleaved(s / r.clamp_min(floor)))
    out = native.scale_by_ratio_(y.clone(), s, r, floor)
    assert torch.equal(out, expected) and torch.equal(out[..., :3], torch.zeros_like(out[..., :3]))


def test_the_node_is_the_same_with_and_without_the_kernels(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    x_half = torch.randn(2, 1, 513, dtype=torch.complex64, generator=gen).requires_grad_()
    idx, val = torch.arange(40, 140), torch.randn(3, 100, 2, generator=gen)
    weight = torch.randn(2, 3, 257, dtype=torch.complex64, generator=gen)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv(native.ENV_VAR, flag)
        out = wavelet_modulus_spectrum(x_half, idx, val, 512)
        grad, = torch.autograd.grad((out * weight.conj()).real.sum(), x_half)
        results.append((out, grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_tensors_without_host_data_use_pytorch(monkeypatch):
    z = torch.randn(4, 8, dtype=torch.complex64)
    assert not native.usable(z[:, ::2])  # not contiguous
    assert not native.usable(torch.randn(4, requires_grad=True))
    assert not torch.func.vmap(lambda t: torch.tensor(native.usable(t)))(z).any()  # batched
    with torch._subclasses.fake_tensor.FakeTensorMode():
        fake = torch.empty(4, 8, dtype=torch.complex64, device="cuda")
        assert not native.usable(fake)
        assert magnitude(fake).shape == (4, 8) and magnitude(fake).device.type == "cuda"
    monkeypatch.setenv(native.ENV_VAR, "0")
    assert not native.usable(z)


def test_without_a_compiler_pytorch_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native.sysconfig, "get_config_var", lambda name: "/nonexistent/cc")
    z = torch.randn(3, 100, dtype=torch.complex64)
    assert not native.usable(z)
    torch.testing.assert_close(magnitude(z), z.abs())
    assert not os.listdir(tmp_path / "scrapl_graph")  # nothing half-written left behind


def _gomp_files():
    with open("/proc/self/maps") as maps:
        return {line.split()[-1] for line in maps if "/libgomp" in line}


@pytest.mark.skipif(native._torch_openmp() is None, reason="torch runs on another threading runtime here")
def test_the_kernels_run_on_torchs_openmp_runtime():
    before = _gomp_files()
    assert native.usable(torch.zeros(1, dtype=torch.complex64)) and native._state["openmp"]
    assert _gomp_files() == before, "the kernels must not load a second OpenMP runtime"
    z = torch.randn(4, 3, 70000, dtype=torch.complex64, generator=torch.Generator().manual_seed(4))
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            torch.testing.assert_close(native.magnitude(z), torch_magnitude(z), rtol=2e-7, atol=0)
        finally:
            torch.set_num_threads(previous)


def test_without_openmp_a_thread_pool_splits_the_calls(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native, "_torch_openmp", lambda: None)
    z = torch.randn(4, 3, 70000, dtype=torch.complex64, generator=torch.Generator().manual_seed(5))
    assert native.usable(z) and not native._state["openmp"]
    torch.testing.assert_close(native.magnitude(z), torch_magnitude(z), rtol=2e-7, atol=0)
    y, s = z.clone(), torch.rand(z.shape, generator=torch.Generator().manual_seed(6))
    r = torch_magnitude(y)
    expected = torch.view_as_complex(torch.view_as_real(y) * interleaved(s / r.clamp_min(1e-10)))
    assert torch.equal(native.scale_by_ratio_(y, s, r, 1e-10), expected)
