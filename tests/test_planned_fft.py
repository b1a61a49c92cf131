"""FFTs with kept plans: torch.fft's values (bit for bit where MKL runs them), its gradients, and its fallbacks."""
import threading

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from scrapl_graph.jtfs import native, planned_fft

planned = pytest.mark.skipif(planned_fft._mkl() is None, reason="torch has no MKL here: torch.fft runs every transform")

NORMS = [None, "backward", "forward", "ortho"]


@pytest.fixture(autouse=True)
def plans_for_every_length(monkeypatch):
    # Short transforms normally go to torch.fft; here they take the planned path too, to test it quickly.
    monkeypatch.setattr(planned_fft, "MIN_LENGTH", 1)


def _complex(shape, dtype=torch.complex64, seed=0):
    return torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


@planned
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("shape", [(7,), (2, 5, 64), (4, 3, 1000)])
def test_complex_transforms_give_the_bits_of_torch_fft(shape, dtype, norm):
    z = _complex(shape, dtype)
    assert planned_fft.usable(z)
    assert torch.equal(planned_fft.fft(z, norm=norm), torch.fft.fft(z, norm=norm))
    assert torch.equal(planned_fft.ifft(z, norm=norm), torch.fft.ifft(z, norm=norm))


@planned
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [64, 1000, 999])  # even and odd lengths (an odd one has no Nyquist bin)
def test_real_transforms_give_the_bits_of_torch_fft(n, dtype, norm):
    x = torch.randn(3, 2, n, dtype=dtype, generator=torch.Generator().manual_seed(1))
    assert torch.equal(planned_fft.rfft(x, norm=norm), torch.fft.rfft(x, norm=norm))
    x_half = torch.fft.rfft(x)
    assert torch.equal(planned_fft.irfft(x_half, n=n, norm=norm), torch.fft.irfft(x_half, n=n, norm=norm))


@pytest.mark.parametrize("n", [40, 70])
def test_the_length_argument_pads_or_cuts_as_torch_does(n):
    z = _complex((2, 55))
    torch.testing.assert_close(planned_fft.ifft(z, n=n), torch.fft.ifft(z, n=n), rtol=0, atol=0)
    torch.testing.assert_close(planned_fft.fft(z, n=n), torch.fft.fft(z, n=n), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="data points"):
        planned_fft.fft(z, n=0)


def test_lazy_views_are_read_as_values():
    # A conjugate or negative view shares memory with its source: the plan must see the values.
    z = _complex((3, 128))
    for view in (z.conj(), torch._neg_view(z), z.t().contiguous().t(), z[:, ::2]):
        torch.testing.assert_close(planned_fft.fft(view), torch.fft.fft(view), rtol=1e-6, atol=1e-5)
    x = torch.randn(128, 3).t()  # not contiguous
    torch.testing.assert_close(planned_fft.rfft(x), torch.fft.rfft(x), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("norm", NORMS)
def test_gradients_to_second_order_in_float64(norm):
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(2, 12, dtype=torch.complex128, generator=gen, requires_grad=True)
    x = torch.randn(2, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    x_odd = torch.randn(2, 11, dtype=torch.float64, generator=gen, requires_grad=True)
    half = torch.randn(2, 7, dtype=torch.complex128, generator=gen, requires_grad=True)
    cases = [(lambda t: planned_fft.fft(t, norm=norm), z), (lambda t: planned_fft.ifft(t, norm=norm), z),
             (lambda t: planned_fft.rfft(t, norm=norm), x), (lambda t: planned_fft.rfft(t, norm=norm), x_odd),
             (lambda t: planned_fft.irfft(t, n=12, norm=norm), half),
             (lambda t: planned_fft.irfft(t, n=13, norm=norm), half)]
    for f, t in cases:
        assert gradcheck(f, (t,)) and gradgradcheck(f, (t,))


def test_gradients_equal_torch_fft_ones():
    gen = torch.Generator().manual_seed(3)
    half = torch.randn(3, 33, dtype=torch.complex64, generator=gen)
    weight = torch.randn(3, 64, generator=gen)
    grads = []
    for irfft in (planned_fft.irfft, torch.fft.irfft):
        t = half.clone().requires_grad_()
        grads.append(torch.autograd.grad((irfft(t, n=64, norm="forward") * weight).sum(), t)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-5)


@planned
def test_a_plan_is_committed_once_per_configuration(monkeypatch):
    monkeypatch.setattr(planned_fft._local, "plans", planned_fft.OrderedDict(), raising=False)
    z = _complex((4, 256))
    planned_fft.fft(z)
    plans = planned_fft._plans()
    first = list(plans.values())
    planned_fft.fft(z.clone())
    assert list(plans.values()) == first, "the same configuration must reuse its plan"
    planned_fft.fft(z[:2])  # another batch size: another plan
    planned_fft.fft(z, norm="ortho")  # another scale: another plan
    assert len(plans) == 3


@planned
def test_the_cache_keeps_the_most_recently_used_plans(monkeypatch):
    monkeypatch.setattr(planned_fft, "CACHE_SIZE", 2)
    monkeypatch.setattr(planned_fft._local, "plans", planned_fft.OrderedDict(), raising=False)
    for n in (16, 32, 16, 64):
        planned_fft.fft(_complex((1, n)))
    assert [key[2] for key in planned_fft._plans()] == [16, 64]
    torch.testing.assert_close(planned_fft.fft(_complex((1, 32))), torch.fft.fft(_complex((1, 32))), rtol=0, atol=0)


@planned
def test_in_place_transform_writes_over_its_input():
    z = _complex((3, 512))
    expected = torch.fft.fft(z, norm="forward")
    out = planned_fft.fft_in_place(z, norm="forward")
    assert out.data_ptr() == z.data_ptr() and torch.equal(out, expected)


@planned
def test_execute_refuses_a_wrong_output():
    z = _complex((2, 64))
    with pytest.raises(ValueError, match="shape"):
        planned_fft.execute("c2c_forward", z, 1.0, out=torch.empty(2, 32, dtype=torch.complex64))
    with pytest.raises(ValueError, match="bins"):
        planned_fft.execute("c2r", z, 1.0, n=64)
    with pytest.raises(ValueError, match="norm"):
        planned_fft.fft(z, norm="unit")


@planned
def test_threads_transform_concurrently():
    z = _complex((8, 4096))
    expected = torch.fft.ifft(z)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(torch.equal(planned_fft.ifft(z), expected))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 80 and all(results)


def test_short_transforms_use_torch_fft(monkeypatch):
    monkeypatch.setattr(planned_fft, "MIN_LENGTH", 1024)
    assert not planned_fft.usable(_complex((4, 512)))
    assert not planned_fft.usable(_complex((4, 1025)), n=1000)  # the transform's length, not the input's
    assert planned_fft.usable(_complex((4, 1024))) == (planned_fft._mkl() is not None)


def test_the_switch_and_tensors_without_data_use_torch_fft(monkeypatch):
    z = _complex((2, 64))
    monkeypatch.setenv(native.ENV_VAR, "0")
    assert not planned_fft.usable(z)
    torch.testing.assert_close(planned_fft.ifft(z), torch.fft.ifft(z), rtol=0, atol=0)
    monkeypatch.delenv(native.ENV_VAR)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.empty(2, 64, dtype=torch.complex64)
        assert not planned_fft.usable(fake)
        assert planned_fft.rfft(torch.empty(2, 64)).shape == (2, 33)
        assert planned_fft.irfft(fake[:, :33], n=64).shape == (2, 64)
    assert planned_fft.usable(z) == (planned_fft._mkl() is not None)


def test_vmap_and_batched_gradients_use_torch_fft():
    z = _complex((3, 2, 32))
    torch.testing.assert_close(torch.vmap(planned_fft.fft)(z), torch.fft.fft(z), rtol=1e-6, atol=1e-5)
    # Batched gradients (as theta-IS takes them) reach the backward as vmapped tensors.
    x = torch.randn(2, 32, dtype=torch.float64, requires_grad=True)
    out = planned_fft.rfft(x)
    basis = torch.eye(out.numel(), dtype=torch.complex128).view(-1, *out.shape)
    rows, = torch.autograd.grad(out, x, basis, is_grads_batched=True)
    x_ref = x.detach().requires_grad_()
    ref, = torch.autograd.grad(torch.fft.rfft(x_ref), x_ref, basis, is_grads_batched=True)
    torch.testing.assert_close(rows, ref)
