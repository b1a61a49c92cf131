"""Recycled buffers of the first-order node: reused across calls, never shared while in use, bounded."""
import torch

from scrapl_graph.jtfs import recycled
from scrapl_graph.jtfs.wavelet_modulus import wavelet_modulus_spectrum


def setup_function():
    recycled.clear()


def test_a_buffer_handed_back_is_taken_again():
    like = torch.zeros(1)
    t = recycled.take((3, 5), torch.float32, like)
    recycled.give(t)
    assert recycled.take((3, 5), torch.float32, like) is t
    assert recycled.take((3, 5), torch.float32, like) is not t  # taken: not handed out twice


def test_other_devices_get_no_buffer():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.empty(2, device="cuda")
        assert recycled.take((2,), torch.float32, fake) is None
        recycled.give(fake)
    assert not recycled._free()


def test_views_and_doubles_are_not_kept(monkeypatch):
    like = torch.zeros(1)
    base = torch.empty(4, 6)
    recycled.give(base[:2], base.t())  # views: their memory belongs to another tensor
    t = torch.empty(2, 6)
    recycled.give(t, t)
    assert recycled.take((2, 6), torch.float32, like) is t
    assert recycled.take((2, 6), torch.float32, like) is not t
    monkeypatch.setattr(recycled, "SHAPES", 2)
    for n in (1, 2, 3):
        recycled.give(torch.empty(n))
    assert [key[0] for key in recycled._free()] == [(2,), (3,)]


def test_the_node_reuses_its_buffers_and_keeps_its_values():
    gen = torch.Generator().manual_seed(0)
    x_half = torch.randn(2, 1, 2049, dtype=torch.complex64, generator=gen).requires_grad_()
    idx, val = torch.arange(100, 600), torch.randn(3, 500, 2, generator=gen)
    results = []
    for _ in range(3):  # the second and third calls run on recycled buffers
        target = wavelet_modulus_spectrum(x_half.detach() * 2, idx, val, 4096, bins=90)
        out = wavelet_modulus_spectrum(x_half, idx, val, 4096, bins=90)
        grad, = torch.autograd.grad((out - target).abs().square().sum(), x_half)
        results.append((target, out, grad))
        assert sum(len(v) for v in recycled._free().values()) >= 3
    for target, out, grad in results[1:]:
        assert torch.equal(target, results[0][0]) and torch.equal(out, results[0][1])
        assert torch.equal(grad, results[0][2])
