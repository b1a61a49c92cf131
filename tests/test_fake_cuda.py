"""GPU readiness without a GPU: the losses, theta-IS and the synths on fake CUDA tensors, forward and backward.

See tests/_fake_cuda.py for what the fake device checks (devices propagate,
a CPU tensor mixed in raises, a host read of a value raises) and how the
backward pass runs. Real-GPU tests live beside the CPU ones and are skipped
without a device.
"""
import pytest
import torch
from torch import nn

from scrapl_graph import JTFSLoss, SCRAPLLoss
from scrapl_graph.processors import ChirpletSynth, DrumSynth, GranularChirpSynth, TimeShift
from _configs import TINY, TINY_N
from _fake_cuda import CUDA, FakeCuda, backward, grad

N = TINY_N


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, N))


def _scrapl(**kw):
    loss = SCRAPLLoss(N, **TINY, cache_target=False, **kw)
    FakeCuda.on_host(loss.sampler, "draw")  # the path draw is host work: CPU probabilities, an int out
    return loss


def _audio(model):
    return torch.tanh(model(torch.randn(2, 4, device=CUDA)))[:, None, :]


# ------------------------------------------------------------- the harness


def test_graph_walk_equals_the_engine_on_cpu():
    """The engine-free backward of the harness gives the engine's gradients (checked on real CPU tensors)."""
    def grads(walk):
        model = _model()
        loss = SCRAPLLoss(N, **TINY, use_p_adam=False, use_p_saga=False, grad_mult=1.0, cache_target=False)
        x = torch.tanh(model(torch.linspace(-1, 1, 8).reshape(2, 4)))[:, None, :]
        value = loss(x, torch.sin(torch.arange(2 * N).reshape(2, 1, N) * 0.3), path_idx=3)
        backward(value) if walk else value.backward()
        return [p.grad for p in model.parameters()]

    for ours, engine in zip(grads(True), grads(False)):
        torch.testing.assert_close(ours, engine)


def test_fake_device_refuses_host_reads_and_cpu_tensors():
    with FakeCuda():
        x = torch.randn(3, device=CUDA)
        with pytest.raises(Exception):
            bool(x.sum() > 0)
        with pytest.raises(Exception):
            x.sum().item()
        with pytest.raises(Exception):
            x + torch.ones(3, device="cpu")


@pytest.mark.xfail(raises=RuntimeError, strict=True,
                   reason="torch 2.11's autograd engine needs a CUDA context (hasPrimaryContext) even for fake "
                          "tensors (pytorch/pytorch#92627); the tests run the backward graph without the engine")
def test_engine_backward_on_fake_cuda():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.randn(3, device=CUDA, requires_grad=True)
        (2 * x).sum().backward()


# ------------------------------------------------------------- the losses


@pytest.mark.parametrize("form", ["optimizer", "hooks"])
def test_scrapl_step_with_p_adam_p_saga(form):
    model, loss = _model(), _scrapl()
    with FakeCuda() as fake:
        fake.to_cuda(model)
        fake.to_cuda(loss)
        if form == "optimizer":
            opt = loss.make_optimizer(model.parameters(), lr=0.1)
        else:
            loss.attach_params(model.parameters())
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
        y = torch.randn(2, 1, N, device=CUDA)
        for _ in range(2):  # the second step meets P-Adam/P-SAGA state
            opt.zero_grad()
            value = loss(_audio(model), y)
            assert value.device == CUDA and value.shape == ()
            value.backward()
            assert all(p.grad.device == CUDA for p in model.parameters())
            opt.step()
        assert all(p.device == CUDA for p in model.parameters())


def test_scrapl_cached_target_and_first_order_paths():
    model = _model()
    loss = SCRAPLLoss(N, **TINY, first_order_share=0.5, use_p_adam=False, use_p_saga=False, grad_mult=1.0)
    FakeCuda.on_host(loss.sampler, "draw")
    with FakeCuda() as fake:
        fake.to_cuda(model)
        fake.to_cuda(loss)
        y = torch.randn(2, 1, N, device=CUDA)
        for idx in (0, loss.n_second, loss.n_paths - 1):
            loss(_audio(model), y, path_idx=idx).backward()
        assert all(p.grad.device == CUDA for p in model.parameters())


def test_scrapl_step_with_learnable_filters():
    model = _model()
    loss = SCRAPLLoss(N, **TINY, learnable=True, use_p_adam=False, use_p_saga=False, optimizer="adam")
    FakeCuda.on_host(loss.sampler, "draw")
    with FakeCuda() as fake:
        fake.to_cuda(model)
        fake.to_cuda(loss)
        y = torch.randn(2, 1, N, device=CUDA)
        for idx in (0, loss.n_paths - 1):
            loss(_audio(model), y, path_idx=idx).backward()
        filters = [p for p in loss.parameters() if p.grad is not None]
        assert filters and all(p.grad.device == CUDA for p in filters)
        assert all(p.grad.device == CUDA for p in model.parameters())


# The second setting averages over few frames: the time average is streamed as a matrix product.
STREAMED_N, STREAMED = 1024, dict(J=6, Q1=2, Q2=1, J_fr=1, Q_fr=1)


@pytest.mark.parametrize("n, config", [(N, TINY), (STREAMED_N, STREAMED)], ids=["tiny", "streamed"])
def test_full_tree_jtfs_loss(n, config):
    loss = JTFSLoss(n, **config)
    with FakeCuda() as fake:
        fake.to_cuda(loss)
        x = torch.randn(2, 1, n, device=CUDA, requires_grad=True)
        value = loss(x, torch.randn(2, 1, n, device=CUDA))
        value.backward()
        assert value.device == CUDA and x.grad.device == CUDA and x.grad.shape == x.shape


def test_clear_errors_without_value_reads():
    """Shape, dtype and device errors need no value: they stay on CUDA."""
    loss = _scrapl()
    with FakeCuda() as fake:
        fake.to_cuda(loss)
        y = torch.randn(2, 1, N, device=CUDA)
        with pytest.raises(ValueError, match="same shape"):
            loss(torch.randn(2, 1, N - 1, device=CUDA), y[..., :-2])
        with pytest.raises(ValueError, match="share dtype and device"):
            loss(torch.randn(2, 1, N, device=CUDA, dtype=torch.float64), y)
        with pytest.raises(ValueError, match="is on cpu but the loss is on cuda"):
            loss(torch.randn(2, 1, N), torch.randn(2, 1, N))


def test_theta_is_curvature_of_one_path():
    """calc_theta_eigs: the double backward through the JTFS and the power iteration, no host read."""
    loss = _scrapl(n_theta=2, use_p_adam=False, use_p_saga=False, grad_mult=1.0)
    encoder = nn.Linear(3, 2)
    with FakeCuda() as fake:
        fake.to_cuda(loss)
        fake.to_cuda(encoder)
        basis = torch.randn(2, N, device=CUDA)
        batch = {"x": torch.randn(2, 1, N, device=CUDA), "code": torch.randn(2, 3, device=CUDA)}

        def theta_fn(x, code):
            return encoder(code)

        def synth_fn(theta):
            return torch.tanh(theta @ basis)[:, None, :]

        eigs = loss.calc_theta_eigs(1, theta_fn, synth_fn, batch, list(encoder.parameters()), n_iter=3)
        assert eigs.shape == (1, 2) and eigs.device == CUDA


def test_power_iteration_without_host_reads_matches(monkeypatch):
    """Without reads every row runs n_iter steps, frozen once converged: the same eigenvalues."""
    from scrapl_graph.scrapl import curvature

    a = torch.stack([torch.diag(torch.tensor([3.0, 1.0, 0.5])), torch.diag(torch.tensor([-2.0, 0.1, 0.0]))])
    a = a.double()

    def matvec(v, rows):
        return torch.einsum("uij,uj->ui", a[rows], v)

    v0 = torch.rand(2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with_reads, _ = curvature.power_iteration(matvec, v0, n_iter=200, tol=1e-9)
    monkeypatch.setattr(curvature, "wants_value_check", lambda t, check_values=None: False)
    without, steps = curvature.power_iteration(matvec, v0, n_iter=200, tol=1e-9)
    assert steps == 200
    torch.testing.assert_close(without, with_reads)
    torch.testing.assert_close(without, torch.tensor([3.0, -2.0], dtype=torch.float64))


# ------------------------------------------------------------- the synths


SYNTHS = {
    "chirplet": lambda: ChirpletSynth(sample_rate=2048, num_samples=1024, f0_hz=256, max_shift=64, seed=0),
    "granular": lambda: GranularChirpSynth(sample_rate=2048, num_samples=1024, num_grains=8, grain_samples=128,
                                           f0_range_hz=(64, 512), seed=0),
    "drum": lambda: DrumSynth(sample_rate=8000, num_samples=1024, seed=0),
}


@pytest.mark.parametrize("kind", SYNTHS)
def test_synth_as_grafx_calls_it(kind):
    """GRAFX calls a processor with (nodes, channels, samples) input and (nodes, ...) parameters on the device."""
    proc = SYNTHS[kind]()
    with FakeCuda() as fake:
        fake.to_cuda(proc)
        params = {name: torch.randn(3, *shape, device=CUDA, requires_grad=True)
                  for name, shape in proc.parameter_size().items()}
        y = proc(torch.zeros(3, 1, proc.num_samples, device=CUDA), **params)
        assert y.device == CUDA and y.shape == (3, 1, proc.num_samples)
        (y * torch.randn_like(y)).sum().backward()
        assert all(p.grad.device == CUDA for p in params.values())


def test_time_shift_as_grafx_calls_it():
    proc = TimeShift(16, seed=2)
    with FakeCuda():
        x = torch.randn(3, 1, 256, device=CUDA, requires_grad=True)
        y = proc(x)
        assert y.device == CUDA
        y.sum().backward()
        assert x.grad.device == CUDA


def test_grad_helper_is_patched_in():
    with FakeCuda():
        assert torch.autograd.grad is grad
