"""SCRAPLLoss: Algorithm 1 (P-Adam, P-SAGA), sampling, resume, unbiasedness, caching, data parallel, errors."""
import io
import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from scrapl_graph import JTFSLoss, SCRAPLLoss
from _configs import TINY, TINY_N

N = TINY_N
SMALL = TINY


class Toy(nn.Module):
    """A tiny 'synth': fixed code -> linear -> tanh audio of shape (batch, 1, N)."""

    def __init__(self, n_in=4):
        super().__init__()
        self.code = torch.linspace(-1, 1, 2 * n_in, dtype=torch.float64).reshape(2, n_in)
        self.net = nn.Sequential(nn.Linear(n_in, 16), nn.Tanh(), nn.Linear(16, N)).double()

    def forward(self):
        return torch.tanh(self.net(self.code))[:, None, :]


def target_audio():
    g = torch.Generator().manual_seed(123)
    return torch.randn(2, 1, N, generator=g, dtype=torch.float64)


def algorithm1(model, loss_plain, paths, lr, b1, b2, eps, grad_mult, use_p_adam=True, use_p_saga=True):
    """Algorithm 1 of the paper, written plainly: replays the given path sequence, returns the trajectory."""
    params = list(model.parameters())
    P = loss_plain.n_paths
    tau, m, v, ghat = {}, {}, {}, {}
    gamma = set()
    y = target_audio()
    trajectory = []
    for k, p in enumerate(paths, start=1):
        loss = loss_plain(model(), y, path_idx=p)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for i, (w, g) in enumerate(zip(params, grads)):
                g = grad_mult * g
                if use_p_adam:
                    t = tau.get(p, 0)
                    mp_ = m.get((i, p), torch.zeros_like(g))
                    vp_ = v.get((i, p), torch.zeros_like(g))
                    mp_ = b1 ** ((k - t) / P) * mp_ + (1 - b1 ** ((k - t) / P)) * g
                    vp_ = b2 ** ((k - t) / P) * vp_ + (1 - b2 ** ((k - t) / P)) * g * g
                    m[(i, p)], v[(i, p)] = mp_, vp_
                    m_hat = mp_ / (1 - b1 ** (k / P))
                    v_hat = vp_ / (1 - b2 ** (k / P))
                    g_current = m_hat / torch.sqrt(eps + v_hat)
                else:
                    g_current = g
                if use_p_saga:
                    g_avg = sum((ghat[(i, c)] for c in gamma), torch.zeros_like(g)) / max(1, len(gamma))
                    g_step = g_current - ghat.get((i, p), torch.zeros_like(g)) + g_avg
                    ghat[(i, p)] = g_current
                else:
                    g_step = g_current
                w -= lr * g_step
            tau[p] = k
            gamma.add(p)
        trajectory.append([w.detach().clone() for w in params])
    return trajectory


@pytest.mark.parametrize("use_p_adam, use_p_saga", [(True, True), (True, False), (False, True)])
def test_matches_algorithm_1_over_60_steps(use_p_adam, use_p_saga):
    lr, b1, b2, eps, grad_mult = 1e-3, 0.9, 0.999, 1e-8, 1e3
    torch.manual_seed(0)
    model = Toy()
    model_ref = Toy()
    model_ref.load_state_dict(model.state_dict())
    loss = SCRAPLLoss(N, **SMALL, grad_mult=grad_mult, use_p_adam=use_p_adam, use_p_saga=use_p_saga,
                      p_adam_b1=b1, p_adam_b2=b2, p_adam_eps=eps)
    loss.attach_params(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    y = target_audio()
    paths, ours = [], []
    for _ in range(60):
        opt.zero_grad()
        loss(model(), y).backward()
        opt.step()
        paths.append(loss.curr_path_idx)
        ours.append([w.detach().clone() for w in model.parameters()])
    assert len(set(paths)) > 3 and len(set(paths)) < len(paths)  # revisits exercise the SAGA memory
    plain = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, grad_mult=1.0)
    ref = algorithm1(model_ref, plain, paths, lr, b1, b2, eps, grad_mult, use_p_adam, use_p_saga)
    for step, (a, b) in enumerate(zip(ours, ref)):
        for wa, wb in zip(a, b):
            torch.testing.assert_close(wa, wb, rtol=1e-10, atol=1e-13, msg=f"step {step + 1}")


def run_steps(model, opt, loss, n_steps, start):
    y = target_audio()
    for step in range(start, start + n_steps):
        opt.zero_grad()
        x = model() + 0.01 * torch.randn(2, 1, N, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        loss(x, y).backward()
        opt.step()


def fresh(seed):
    torch.manual_seed(seed)
    model = Toy()
    loss = SCRAPLLoss(N, **SMALL, grad_mult=1e3)
    loss.attach_params(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, weight_decay=1e-2)
    return model, opt, loss


def test_resume_is_bit_exact():
    model, opt, loss = fresh(0)
    run_steps(model, opt, loss, 40, 0)
    uninterrupted = [w.detach().clone() for w in model.parameters()]

    model, opt, loss = fresh(0)
    run_steps(model, opt, loss, 20, 0)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "loss": loss.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    model, opt, loss = fresh(999)  # another process: different global RNG, different init
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["opt"])
    loss.load_state_dict(checkpoint["loss"])
    run_steps(model, opt, loss, 20, 20)
    for a, b in zip(uninterrupted, model.parameters()):
        assert torch.equal(a, b)


def test_state_requires_matching_attached_params():
    model, opt, loss = fresh(0)
    run_steps(model, opt, loss, 3, 0)
    state = loss.state_dict()
    other = SCRAPLLoss(N, **SMALL, grad_mult=1e3)
    with pytest.raises(ValueError, match="attach_params"):
        other.load_state_dict(state)
    other.attach_params([nn.Parameter(torch.zeros(3, dtype=torch.float64))] * len(list(model.parameters())))
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(state)


def test_pathwise_state_is_lazy_and_on_the_parameter_device():
    model, opt, loss = fresh(0)
    assert loss.pathwise_state_bytes() == 0
    run_steps(model, opt, loss, 5, 0)
    n_weights = sum(w.numel() for w in model.parameters())
    visited = len(loss.path_counts)
    # m, v and the SAGA memory per visited path, plus one running sum.
    assert loss.pathwise_state_bytes() == (3 * visited + 1) * n_weights * 8
    for state, w in zip(loss.pathwise.states, model.parameters()):
        assert all(t.device == w.device for t in state["m"].values())


def test_gradient_already_present_is_refused():
    model, opt, loss = fresh(0)
    y = target_audio()
    loss(model(), y).backward()
    with pytest.raises(ValueError, match="zero_grad"):
        loss(model(), y).backward()


def test_eval_mode_leaves_gradients_and_state_alone():
    model, opt, loss = fresh(0)
    loss.eval()
    y = target_audio()
    value = loss(model(), y, path_idx=2)
    value.backward()
    g = [w.grad.clone() for w in model.parameters()]
    plain = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, grad_mult=1.0)
    model.zero_grad()
    plain(model(), y, path_idx=2).backward()
    for a, w in zip(g, model.parameters()):
        torch.testing.assert_close(a, w.grad)
    assert loss.step_count == 0 and not loss.path_counts


def test_seeded_draws_match_the_reference_readme():
    loss = SCRAPLLoss(48000, J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2)
    assert loss.n_paths == 315 and loss.unif_prob == pytest.approx(1 / 315)
    assert loss.sample_path(seed=42) == 211  # the reference README's output for seed=42
    assert loss.sample_path(seed=42) == 211


def first_pass_paths(loss) -> list:
    """The paths drawn by ``n_paths`` training calls, sorted."""
    x = torch.randn(1, 1, N)
    seen = []
    for _ in range(loss.n_paths):
        loss(x, x)
        seen.append(loss.curr_path_idx)
    return sorted(seen)


def test_sample_all_paths_first_visits_every_path():
    loss = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, sample_all_paths_first=True)
    assert first_pass_paths(loss) == list(range(loss.n_paths))


def test_mean_of_path_losses_and_gradients_is_the_full_jtfs():
    torch.manual_seed(0)
    x = torch.randn(2, 1, N, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 1, N, dtype=torch.float64)
    scrapl = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, grad_mult=1.0)
    values, grads = [], []
    for p in range(scrapl.n_paths):
        value = scrapl(x, y, path_idx=p)
        values.append(value.detach())
        grads.append(torch.autograd.grad(value, x)[0])
    full = JTFSLoss(N, **SMALL).double()
    value = full(x, y)
    (g_full,) = torch.autograd.grad(value, x)
    torch.testing.assert_close(torch.stack(values).mean(), value.detach(), rtol=1e-12, atol=0)
    g_mean = torch.stack(grads).mean(0)
    assert (g_mean - g_full).norm() / g_full.norm() < 1e-10


def test_paths_per_step_is_an_unbiased_average():
    torch.manual_seed(0)
    x = torch.randn(1, 1, N, dtype=torch.float64)
    y = torch.randn(1, 1, N, dtype=torch.float64)
    loss = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, paths_per_step=3)
    per_path = torch.stack([loss(x, y, path_idx=p) for p in range(loss.n_paths)])
    # The estimator is the mean of the drawn paths' losses, from one shared first-order pass.
    torch.testing.assert_close(loss(x, y, path_idx=[0, 2, 2]), per_path[[0, 2, 2]].mean())
    # Draws are i.i.d. uniform, so E[estimator] = mean over paths = the full loss.
    values, counts = [], torch.zeros(loss.n_paths)
    for _ in range(600):
        values.append(loss(x, y))
        counts[loss.curr_path_idxs] += 1
    expected = counts.sum() / loss.n_paths
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 3 * loss.n_paths  # far from the hundreds a biased sampler would give
    sem = torch.stack(values).std() / math.sqrt(len(values))
    assert abs(torch.stack(values).mean() - per_path.mean()) < 4 * sem
    full = JTFSLoss(N, **SMALL).double()
    torch.testing.assert_close(per_path.mean(), full(x, y))


def test_any_length_builds_one_transform_per_length():
    loss = SCRAPLLoss(None, **SMALL, use_p_adam=False, use_p_saga=False)
    for n in (512, 1000, 512):
        assert torch.isfinite(loss(torch.randn(1, 1, n), torch.randn(1, 1, n)))
    assert loss.transforms.lengths() == [512, 1000]
    fixed = SCRAPLLoss(512, **SMALL, use_p_adam=False, use_p_saga=False)
    with pytest.raises(ValueError, match="shape=512"):
        fixed(torch.randn(1, 1, 1000), torch.randn(1, 1, 1000))


def record_calls(obj, method: str) -> list:
    """Wrap ``obj.method`` so that each call appends its second argument (the path list) to the returned list."""
    calls, original = [], getattr(obj, method)

    def recording(first, idxs):
        calls.append(list(idxs))
        return original(first, idxs)

    setattr(obj, method, recording)
    return calls


def test_fixed_target_coefficients_are_cached():
    loss = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False)
    calls = record_calls(loss.jtfs_for(N), "paths_coefficients")
    x, y = torch.randn(2, 1, N), torch.randn(2, 1, N)
    first = loss(x, y, path_idx=1)
    assert loss(x, y, path_idx=1) == first
    assert len(calls) == 3  # estimate, target, estimate again: the target came from the cache
    y.mul_(2.0)  # in-place change: the cache must notice
    assert loss(x, y, path_idx=1) != first
    assert len(calls) == 5
    uncached = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, cache_target=False)
    torch.testing.assert_close(uncached(x, y, path_idx=1), loss(x, y, path_idx=1))


def test_probs_files_load_and_bad_ones_are_refused(tmp_path):
    loss = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False)
    probs = torch.rand(loss.n_paths, dtype=torch.float64)
    probs /= probs.sum()
    good = tmp_path / "probs.pt"
    torch.save(probs, good)  # the reference writes a float64 tensor of shape (n_paths,)
    loaded = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, probs_path=str(good))
    torch.testing.assert_close(loaded.probs, probs)
    for bad, match in ((torch.ones(loss.n_paths + 1) / (loss.n_paths + 1), "shape"),
                       (torch.ones(loss.n_paths), "sum to 1"),
                       (-probs, ">= 0")):
        path = tmp_path / "bad.pt"
        torch.save(bad, path)
        with pytest.raises(ValueError, match=match):
            loss.load_probs(str(path))
    with pytest.raises(ValueError, match="does not exist"):
        loss.load_probs(str(tmp_path / "missing.pt"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(grad_mult=1.0), "grad_mult > 1"),
        (dict(paths_per_step=2), "use_p_adam=False"),
        (dict(min_prob_frac=1.0), "min_prob_frac"),
        (dict(n_theta=0), "n_theta"),
    ],
)
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SCRAPLLoss(N, **SMALL, **kwargs)


def test_bad_inputs():
    loss = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False)
    x = torch.randn(2, 1, N)
    with pytest.raises(ValueError, match="same shape"):
        loss(x, torch.randn(1, 1, N))
    with pytest.raises(ValueError, match="NaN or Inf"):
        loss(x, torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="out of range"):
        loss(x, x, path_idx=loss.n_paths)
    with pytest.raises(TypeError, match="integer"):
        loss(x, x, path_idx=0.5)
    with pytest.raises(ValueError, match="batch, channels, samples"):
        loss(x[0], x[0])
    with pytest.raises(TypeError, match="requires grad"):
        loss.attach_params([torch.zeros(3)])


def _distributed_worker(rank, world_size, init_file, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(100 + rank)  # different global RNG on each rank
        loss = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False)
        x = torch.randn(1, 1, N)
        drawn = []
        for _ in range(8):
            loss(x, x)
            drawn.append(loss.curr_path_idx)
        gathered = [None] * world_size
        dist.all_gather_object(gathered, drawn)
        if rank == 0:
            results.put(gathered)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_data_parallel_ranks_draw_the_same_paths():
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        mp.start_processes(_distributed_worker, args=(2, os.path.join(tmp, "init"), results), nprocs=2,
                           start_method="spawn")
        gathered = results.get(timeout=60)
    assert gathered[0] == gathered[1]
    assert len(set(gathered[0])) > 1


def test_under_torch_distributed_every_step_takes_rank_0s_path(monkeypatch):
    """In one process, a stand-in for a 2-rank group: the drawn path is replaced by rank 0's broadcast one."""
    broadcasts = []

    def broadcast(tensor, src, *args, **kwargs):
        broadcasts.append(src)
        tensor.fill_(4)  # rank 0 drew path 4

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *args, **kwargs: 2)
    monkeypatch.setattr(dist, "get_backend", lambda *args, **kwargs: "gloo")
    monkeypatch.setattr(dist, "broadcast", broadcast)
    loss = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False)
    x = torch.randn(1, 1, N)
    for _ in range(3):
        loss(x, x)
    assert loss.curr_path_idx == 4 and dict(loss.path_counts) == {4: 3}
    assert broadcasts == [0, 0, 0]
    loss(x, x, path_idx=1)  # a requested path is every rank's already: no broadcast
    assert loss.curr_path_idx == 1 and len(broadcasts) == 3
