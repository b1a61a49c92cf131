"""theta-IS warmup: power iteration, curvature values, save/resume, sharding, plots, chirplet check."""
import logging
import math
import os

import pytest
import torch
from torch import nn

from scrapl_graph import SCRAPLLoss
from scrapl_graph.scrapl.curvature import power_iteration, synth_is_per_example, theta_size
from scrapl_graph.scrapl.importance import aggregate_vals

N = 1024
CONFIG = dict(shape=N, J=3, Q1=1, Q2=1, J_fr=2, Q_fr=1)  # 7 paths


def toy_synth(theta):
    """(..., 3) -> (B, 1, N): three partials whose amplitude and phase follow theta; example b uses row b."""
    theta = theta.reshape(-1, theta.shape[-1])
    t = torch.arange(N, dtype=theta.dtype) / N
    freqs = torch.tensor([40.0, 90.0, 200.0], dtype=theta.dtype)[: theta.shape[1]]
    amp = torch.sigmoid(theta)[:, :, None]
    phase = 2 * math.pi * freqs[None, :, None] * t * (1 + 0.05 * theta[:, :, None])
    return (amp * torch.sin(phase)).sum(dim=1, keepdim=True)


def path_loss(loss, theta, target, path_idx):
    jtfs = loss.jtfs_for(N, "cpu", torch.float64)
    s = jtfs.paths_coefficients(toy_synth(theta).reshape(-1, N), [path_idx])
    st = jtfs.paths_coefficients(target.reshape(-1, N), [path_idx])
    return torch.linalg.vector_norm(st - s, dim=(-2, -1)).mean()


def direct_problem(shape=(3,), seed=0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
    target = toy_synth(torch.randn(shape, generator=g, dtype=torch.float64))
    return theta, target


# ------------------------------------------------------------ power iteration
def test_power_iteration_matches_known_eigenvalues():
    g = torch.Generator().manual_seed(0)
    mats, expected = [], []
    for eig in ([5.0, 2.0, 1.0, 0.5, 0.1], [-4.0, 1.0, 0.5, 0.2, 0.0], [3.0, 2.9, -1.0, 0.3, 0.1]):
        q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
        mats.append(q @ torch.diag(torch.tensor(eig, dtype=torch.float64)) @ q.T)
        expected.append(eig[0])
    mats = torch.stack(mats)
    calls = []

    def matvec(v, rows):
        calls.append(len(rows))
        return torch.einsum("kij,kj->ki", mats[rows], v)

    eigs, steps = power_iteration(matvec, torch.rand(3, 5, generator=g, dtype=torch.float64), n_iter=2000, tol=1e-12)
    assert torch.allclose(eigs, torch.tensor(expected, dtype=torch.float64), rtol=1e-4)
    # Rows stop on their own: the well-separated ones drop out before the close pair (3.0 vs 2.9).
    assert calls[0] == 3 and calls[-1] == 1 and steps < 2000


def test_power_iteration_stops_early_and_handles_null_space():
    a = torch.diag(torch.tensor([2.0, 0.0], dtype=torch.float64))
    eigs, steps = power_iteration(lambda v, rows: v @ a, torch.tensor([[1.0, 1.0]], dtype=torch.float64),
                                  n_iter=100, tol=1e-4)
    assert steps < 100 and abs(eigs[0].item() - 2.0) < 1e-3
    eigs, steps = power_iteration(lambda v, rows: torch.zeros_like(v), torch.ones(2, 3), n_iter=10)
    assert steps == 1 and eigs.abs().max() == 0
    with pytest.raises(ValueError):
        power_iteration(lambda v, rows: v, torch.zeros(1, 3))
    with pytest.raises(ValueError):
        power_iteration(lambda v, rows: v, torch.ones(3), n_iter=3)


# --------------------------------------------------- curvature values (exact)
def test_direct_theta_curvature_equals_hessian_diagonal():
    """theta_fn returns the parameter itself: C[u, p] = |d^2 L_p / d theta_u^2|."""
    loss = SCRAPLLoss(n_theta=3, **CONFIG)
    theta, target = direct_problem()
    vals = loss.warmup_lc_hvp(lambda x: theta, toy_synth, {"x": target}, [theta], save_dir=None, n_iter=50,
                              tol=1e-10, progress=False)
    for p in (0, 3, 6):
        hess = torch.autograd.functional.hessian(lambda t: path_loss(loss, t, target, p), theta.detach())
        expected = hess.diagonal().abs().float()
        assert torch.allclose(vals[p][0], expected, rtol=1e-4, atol=1e-9), (p, vals[p], expected)


@pytest.mark.parametrize("theta_hessian", ["full", "per_example", "auto"])
def test_batched_direct_curvature_matches_dense_operator(theta_hessian):
    """theta (B, U): A_u = M_u H, whose largest eigenvalue is that of H on coordinate u's entries."""
    loss = SCRAPLLoss(n_theta=3, **CONFIG)
    theta, target = direct_problem((2, 3), seed=1)
    p = 4
    eigs = loss.calc_theta_eigs(p, lambda x: theta, toy_synth, {"x": target}, [theta], n_iter=200, tol=1e-12,
                                theta_hessian=theta_hessian)
    hess = torch.autograd.functional.hessian(lambda t: path_loss(loss, t, target, p), theta.detach())
    hess = hess.reshape(6, 6)
    for u in range(3):
        idx = torch.tensor([u, 3 + u])
        expected = torch.linalg.eigvalsh(hess[idx][:, idx]).abs().max()
        assert math.isclose(eigs[0, u].abs().item(), expected.item(), rel_tol=1e-4)


def test_encoder_curvature_matches_dense_jacobian():
    """With an encoder, C[u, p] is the largest |eigenvalue| of the Jacobian of g_u(w) = J^T (e_u * dL/dtheta)."""
    torch.manual_seed(0)
    loss = SCRAPLLoss(n_theta=3, **CONFIG)
    x = toy_synth(torch.randn(2, 3, dtype=torch.float64)) + 0.01 * torch.randn(2, 1, N, dtype=torch.float64)
    feats = torch.randn(2, 2, dtype=torch.float64)
    w = (0.5 * torch.randn(2, 3, dtype=torch.float64)).requires_grad_()
    theta_fn = lambda x, w_=None: torch.tanh(feats @ (w if w_ is None else w_))
    p = 2
    eigs = loss.calc_theta_eigs(p, theta_fn, toy_synth, {"x": x}, [w], n_iter=2000, tol=1e-13)

    def g_u(w_, u):
        theta = theta_fn(x, w_)
        (dl,) = torch.autograd.grad(path_loss(loss, theta, x, p), theta, create_graph=True)
        mask = torch.zeros_like(theta)
        mask[:, u] = 1
        (gu,) = torch.autograd.grad(theta, w_, grad_outputs=dl * mask, create_graph=True)
        return gu.reshape(-1)

    for u in range(3):
        jac = torch.autograd.functional.jacobian(lambda w_: g_u(w_, u), w.detach().requires_grad_())
        ev = torch.linalg.eigvals(jac.reshape(6, 6))
        top = ev[ev.abs().argmax()]
        assert abs(top.imag.item()) < 1e-9 * abs(top.real.item()) + 1e-15
        assert math.isclose(eigs[0, u].item(), top.real.item(), rel_tol=1e-4)


# ------------------------------------------------------------ probabilities
def test_warmup_probabilities_follow_equation_10():
    loss = SCRAPLLoss(n_theta=3, min_prob_frac=0.2, **CONFIG)
    theta, target = direct_problem()
    vals = loss.warmup_lc_hvp(lambda x: theta, toy_synth, [{"x": target}], [theta], save_dir=None, n_iter=10,
                              progress=False)
    c = torch.stack([vals[p][0] for p in range(loss.n_paths)], dim=1).double()  # (U, P)
    pi = (c / c.sum(dim=1, keepdim=True)).mean(dim=0)
    expected = pi * (1 - 0.2) + 0.2 / loss.n_paths
    assert torch.allclose(loss.probs, expected, atol=1e-6)


def test_aggregate_vals_and_param_groups():
    vals = torch.tensor([[1.0, 4.0], [3.0, 2.0], [2.0, 9.0]])
    assert aggregate_vals(vals[:1]).tolist() == [1.0, 4.0]
    assert aggregate_vals(vals, "mean").tolist() == [2.0, 5.0]
    assert aggregate_vals(vals, "max").tolist() == [3.0, 9.0]
    assert aggregate_vals(vals, "med").tolist() == [2.0, 4.0]
    with pytest.raises(ValueError):
        aggregate_vals(vals, "none")
    with pytest.raises(ValueError):
        aggregate_vals(vals, "sum")
    loss = SCRAPLLoss(n_theta=3, **CONFIG)
    enc = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    feats = torch.randn(2, 4, dtype=torch.float64)
    x = toy_synth(torch.randn(2, 3, dtype=torch.float64))
    vals = loss.warmup_lc_hvp(lambda x: enc(feats), toy_synth, {"x": x}, list(enc.parameters()), save_dir=None,
                              start_path_idx=2, end_path_idx=4, n_iter=5, agg="med", progress=False)
    assert sorted(vals) == [2, 3] and vals[2].shape == (4, 3)


def test_theta_size_and_layouts():
    from scrapl_graph.graph import ThetaLayout
    from scrapl_graph.processors import ChirpletSynth

    layout = ThetaLayout({"chirplet": ChirpletSynth(num_samples=N, max_shift=0)}, {"chirplet": 2})
    assert theta_size(layout) == 4 and theta_size(3) == 3
    with pytest.raises(TypeError):
        theta_size("four")
    assert synth_is_per_example(toy_synth, torch.zeros(2, 3), {})
    assert not synth_is_per_example(lambda t: toy_synth(t + t.mean(0)), torch.zeros(2, 3), {})


def test_bad_inputs_raise():
    loss = SCRAPLLoss(n_theta=2, **CONFIG)
    theta, target = direct_problem()
    kw = dict(save_dir=None, progress=False)
    with pytest.raises(ValueError, match="n_theta"):
        loss.warmup_lc_hvp(lambda x: theta, toy_synth, {"x": target}, [theta], **kw)
    loss = SCRAPLLoss(n_theta=3, **CONFIG)
    with pytest.raises(ValueError, match="agg"):
        loss.warmup_lc_hvp(lambda x: theta, toy_synth, {"x": target}, [theta], agg="sum", **kw)
    with pytest.raises(ValueError, match="'x'"):
        loss.warmup_lc_hvp(lambda y: theta, toy_synth, {"y": target}, [theta], **kw)
    with pytest.raises(ValueError, match="start_path_idx"):
        loss.warmup_lc_hvp(lambda x: theta, toy_synth, {"x": target}, [theta], start_path_idx=5, end_path_idx=2, **kw)
    with pytest.raises(ValueError, match="params"):
        loss.warmup_lc_hvp(lambda x: theta, toy_synth, {"x": target}, [], **kw)
    with pytest.raises(TypeError):
        loss.warmup_lc_hvp(lambda x: theta, toy_synth, "x", [theta], **kw)
    noisy = lambda t: toy_synth(t) + 1e-3 * torch.randn(1, 1, N, dtype=t.dtype)
    assert loss.check_is_deterministic(lambda x: theta, {"x": target}, toy_synth)
    assert not SCRAPLLoss.check_is_deterministic(lambda x: theta, {"x": target}, noisy)


# ------------------------------------------------------- save, resume, load
def test_save_dir_resume_refuse_and_partial_load(tmp_path, caplog, monkeypatch):
    save_dir = str(tmp_path / "warmup")
    theta, target = direct_problem()
    args = (lambda x: theta, toy_synth, {"x": target}, [theta])
    loss = SCRAPLLoss(n_theta=3, **CONFIG)
    loss.warmup_lc_hvp(*args, save_dir=save_dir, start_path_idx=0, end_path_idx=3, n_iter=5, progress=False)
    names = sorted(os.listdir(save_dir))
    assert names == ["vals_0.pt", "vals_1.pt", "vals_2.pt", "warmup.json"]  # no temp files left, no probs yet

    # Partial directory: loads with a warning naming the missing paths.
    other = SCRAPLLoss(n_theta=3, **CONFIG)
    with caplog.at_level(logging.WARNING, logger="scrapl_graph.losses.scrapl_theta_is"):
        other.load_probs_from_warmup_dir(save_dir)
    assert "[3, 4, 5, 6]" in caplog.text and other.loaded_probs_path == save_dir

    # Resume: only the missing paths are computed.
    computed = []
    original = SCRAPLLoss.calc_theta_eigs

    def counting(self, path_idx, *a, **k):
        computed.append(path_idx)
        return original(self, path_idx, *a, **k)

    monkeypatch.setattr(SCRAPLLoss, "calc_theta_eigs", counting)
    fresh = SCRAPLLoss(n_theta=3, **CONFIG)
    fresh.warmup_lc_hvp(*args, save_dir=save_dir, n_iter=5, progress=False)
    assert computed == [3, 4, 5, 6]
    assert os.path.isfile(os.path.join(save_dir, "probs.pt"))
    assert torch.allclose(torch.load(os.path.join(save_dir, "probs.pt"))["probs"], fresh.probs)
    loaded = SCRAPLLoss(n_theta=3, **CONFIG)
    loaded.load_probs_from_warmup_dir(save_dir)
    assert torch.allclose(loaded.probs, fresh.probs)
    with pytest.raises(ValueError, match="clear"):
        loaded.warmup_lc_hvp(*args, save_dir=None, progress=False)

    # Another configuration or path set is refused.
    with pytest.raises(ValueError, match="n_iter"):
        SCRAPLLoss(n_theta=3, **CONFIG).warmup_lc_hvp(*args, save_dir=save_dir, n_iter=6, progress=False)
    with pytest.raises(ValueError, match="path_keys"):
        SCRAPLLoss(n_theta=3, **{**CONFIG, "J_fr": 1}).warmup_lc_hvp(*args, save_dir=save_dir, n_iter=5,
                                                                   progress=False)
    with pytest.raises(ValueError, match="path set"):
        SCRAPLLoss(n_theta=3, **{**CONFIG, "J_fr": 1}).load_probs_from_warmup_dir(save_dir)
    with pytest.raises(ValueError, match="does not exist"):
        loaded.load_probs_from_warmup_dir(str(tmp_path / "nowhere"))


# ------------------------------------------------------------- distributed
def _distributed_worker(rank, world, init_file, out_dir):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        theta, target = direct_problem()
        loss = SCRAPLLoss(n_theta=3, **CONFIG)
        vals = loss.warmup_lc_hvp(lambda x: theta, toy_synth, {"x": target}, [theta], save_dir=out_dir,
                                  n_iter=8, progress=False)
        torch.save({"probs": loss.probs, "paths": sorted(vals)}, os.path.join(out_dir, f"rank{rank}.result"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_warmup_equals_single_process(tmp_path):
    import torch.multiprocessing as mp

    out_dir = str(tmp_path / "shards")
    os.makedirs(out_dir)
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), out_dir), nprocs=2, join=True)
    theta, target = direct_problem()
    single = SCRAPLLoss(n_theta=3, **CONFIG)
    single.warmup_lc_hvp(lambda x: theta, toy_synth, {"x": target}, [theta], save_dir=None, n_iter=8,
                         progress=False)
    for rank in range(2):
        result = torch.load(os.path.join(out_dir, f"rank{rank}.result"))
        assert result["paths"] == list(range(7))
        assert torch.allclose(result["probs"], single.probs, rtol=1e-5, atol=1e-7)
    assert sorted(f for f in os.listdir(out_dir) if f.startswith("vals_")) == [f"vals_{i}.pt" for i in range(7)]


def test_each_rank_of_a_sharded_warmup_computes_its_paths_and_ends_with_all(tmp_path, monkeypatch):
    """In one process, a stand-in for a 2-rank group: each rank computes and saves its shard of the paths, the
    gather gives it the other rank's values, and both end with the single-process probabilities."""
    theta, target = direct_problem()
    args = (lambda x: theta, toy_synth, {"x": target}, [theta])
    single = SCRAPLLoss(n_theta=3, **CONFIG)
    everything = single.warmup_lc_hvp(*args, save_dir=None, n_iter=8, progress=False)
    rank = {"now": 0}

    def all_gather_object(gathered, mine):  # the other rank's shard comes from the single-process run
        for r in range(len(gathered)):
            gathered[r] = mine if r == rank["now"] else {k: v for k, v in everything.items() if k not in mine}

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *a, **k: rank["now"])
    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    computed = {}
    for r in (0, 1):
        rank["now"] = r
        out_dir = tmp_path / f"rank{r}"
        loss = SCRAPLLoss(n_theta=3, **CONFIG)
        vals = loss.warmup_lc_hvp(*args, save_dir=str(out_dir), n_iter=8, progress=False)
        assert sorted(vals) == list(range(7))
        assert torch.allclose(loss.probs, single.probs, rtol=1e-5, atol=1e-7)
        computed[r] = sorted(int(f[5:-3]) for f in os.listdir(out_dir) if f.startswith("vals_"))
        assert (out_dir / "probs.pt").exists() == (r == 0)  # rank 0 writes the probabilities
    assert computed[0] and computed[1] and sorted(computed[0] + computed[1]) == list(range(7))


# -------------------------------------------------------------------- plots
def test_plot_probs_writes_png(tmp_path):
    from scrapl_graph.plotting import plot_probs

    loss = SCRAPLLoss(n_theta=1, **CONFIG)
    loss.probs = torch.linspace(1, 2, loss.n_paths, dtype=torch.float64) / torch.linspace(1, 2, loss.n_paths).sum()
    out = loss.plot_probs(str(tmp_path / "probs.png"), sample_rate=8192, regions=[((100, 500), (0.1, 0.4))])
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        plot_probs(loss, str(tmp_path / "bad.png"), sample_rate=0)
    with pytest.raises(ValueError):
        plot_probs(loss, str(tmp_path / "bad.png"), sample_rate=8192, probs=torch.ones(3) / 3)


# ----------------------------------------------------- chirplet (paper, 4.3)
def test_chirplet_warmup_favours_paths_in_the_am_fm_ranges():
    """Paths whose rate lies in the synth's AM range get clearly more than their uniform share."""
    from scrapl_graph.processors import ChirpletSynth

    sr, n, am, fm = 512.0, 2048, (2.8, 8.4), (4.0, 12.0)
    synth = ChirpletSynth(sample_rate=sr, num_samples=n, f0_hz=64.0, am_range=am, fm_range=fm, max_shift=0)
    loss = SCRAPLLoss(shape=n, J=6, Q1=2, Q2=1, J_fr=1, Q_fr=1, n_theta=2)  # 20 paths, rates 2.8 to 22.4 Hz
    g = torch.Generator().manual_seed(0)
    # float64: the chirplet's second derivatives underflow in float32 at the window's tails.
    theta = torch.randn(4, 2, generator=g, dtype=torch.float64).requires_grad_()
    target = synth(None, theta_am=torch.randn(4, 1, generator=g, dtype=torch.float64),
                   theta_fm=torch.randn(4, 1, generator=g, dtype=torch.float64))
    synth_fn = lambda th: synth(None, theta_am=th[:, :1], theta_fm=th[:, 1:])
    loss.warmup_lc_hvp(lambda x: theta, synth_fn, {"x": target}, [theta], save_dir=None, n_iter=10,
                       progress=False)
    in_am = torch.tensor([am[0] / 1.2 <= p.rate_hz(sr) <= am[1] * 1.2 for p in loss.paths])
    share = in_am.double().mean().item()
    assert 0 < share < 1
    mass = loss.probs[in_am].sum().item()
    assert mass > 1.5 * share, (mass, share)
    top = loss.paths[int(loss.probs.argmax())]
    assert in_am[top.idx] and fm[0] <= top.rate_hz(sr) / top.scale <= fm[1]  # its rate / scale is an FM rate
