"""SCRAPLLoss with first-order paths (first_order_share) and theta weights: exactness, sampling, theta-IS, files."""
import math
import warnings

import pytest
import torch

from scrapl_graph import JTFSLoss, SCRAPLLoss
from scrapl_graph.losses import path_distance
from scrapl_graph.losses.scrapl_theta_is import path_loss
from scrapl_graph.scrapl.order_share import impose_share
from scrapl_graph.scrapl.probs_file import path_set_identity
from _configs import TINY, TINY_N
from test_scrapl_loss import Toy, algorithm1, first_pass_paths, record_calls, target_audio

N = TINY_N
SMALL = TINY  # 5 second-order paths, 3 first-order paths
PLAIN = dict(use_p_adam=False, use_p_saga=False, grad_mult=1.0)


def signals(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 1, N, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 1, N, generator=g, dtype=torch.float64)
    return x, y


def test_default_path_set_is_the_reference_second_order_set():
    loss = SCRAPLLoss(N, **SMALL, **PLAIN)
    jtfs = loss.jtfs
    assert loss.first_order_share is None and loss.n_first == 0
    assert loss.paths == jtfs.paths and loss.n_paths == loss.n_second == jtfs.n_paths
    assert loss.identity == path_set_identity(loss.jtfs_config, jtfs.keys)
    torch.testing.assert_close(loss.probs, torch.full((jtfs.n_paths,), 1 / jtfs.n_paths, dtype=torch.float64))


def test_first_order_paths_are_appended_with_their_metadata():
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share="uniform")
    jtfs = loss.jtfs
    n2, n1 = jtfs.n_paths, jtfs.n_first_order
    assert (loss.n_second, loss.n_first, loss.n_paths) == (n2, n1, n2 + n1)
    assert [p.idx for p in loss.path_info] == list(range(n2 + n1))
    assert [p.order for p in loss.paths] == [2] * n2 + [1] * n1
    first = loss.paths[n2:]
    assert all(p.n2 == -1 and p.j2 == -1 and p.xi2 == 0.0 and p.spin >= 0 for p in first)
    assert [p.n_fr for p in first] == [n for n, s in enumerate(jtfs.spin) if s >= 0]
    assert len(set(loss.scrapl_keys)) == loss.n_paths  # no key names two paths
    # First-order path n2 + c is channel c of JTFS.first_order.
    x, y = signals()
    S1 = jtfs.first_order(x.detach()[:, 0].float())
    for c in range(n1):
        expected = path_distance(S1[:, c], jtfs.first_order(y[:, 0].float())[:, c]).mean()
        torch.testing.assert_close(loss(x.detach().float(), y.float(), path_idx=n2 + c), expected)


@pytest.mark.parametrize("share", ["uniform", 0.3])
def test_probability_weighted_path_losses_and_gradients_are_the_full_loss(share):
    """sum_p pi_p d_p and its gradient equal the full loss: JTFSLoss(first_order=True) for 'uniform',
    (1 - s) * (second-order mean) + s * (first-order mean) for a share s."""
    x, y = signals()
    scrapl = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share=share).double()
    n2, n1 = scrapl.n_second, scrapl.n_first
    s = n1 / (n2 + n1) if share == "uniform" else share
    torch.testing.assert_close(scrapl.probs, torch.tensor([(1 - s) / n2] * n2 + [s / n1] * n1, dtype=torch.float64),
                               rtol=1e-15, atol=0)
    value, grad = 0.0, torch.zeros_like(x)
    for p in range(scrapl.n_paths):
        d = scrapl(x, y, path_idx=p)
        value = value + scrapl.probs[p] * d.detach()
        grad += scrapl.probs[p] * torch.autograd.grad(d, x)[0]
    if share == "uniform":
        full = JTFSLoss(N, **SMALL, first_order=True).double()(x, y)
    else:
        jtfs = JTFSLoss(N, **SMALL).double()
        first = path_distance(jtfs.jtfs.first_order(x[:, 0]), jtfs.jtfs.first_order(y[:, 0])).mean()
        full = (1 - s) * jtfs(x, y) + s * first
    (g_full,) = torch.autograd.grad(full, x)
    torch.testing.assert_close(value, full.detach(), rtol=1e-10, atol=0)
    assert (grad - g_full).norm() / g_full.norm() < 1e-10


def test_draws_follow_the_share():
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share=0.3)
    loss.manual_seed(0)
    draws = torch.tensor([loss.sample_path() for _ in range(3000)])
    counts = torch.bincount(draws, minlength=loss.n_paths).double()
    expected = 3000 * loss.probs
    assert ((counts - expected) ** 2 / expected).sum() < 3 * loss.n_paths
    first = (draws >= loss.n_second).double().mean().item()
    assert abs(first - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 3000)


def test_several_paths_per_step_mix_orders():
    x, y = signals(1)
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share="uniform", paths_per_step=4).double()
    n2 = loss.n_second
    request = [n2 + 1, 0, n2, 3, n2 + 1]
    per_path = torch.stack([loss(x, y, path_idx=p) for p in request])
    mixed = loss(x, y, path_idx=request)
    torch.testing.assert_close(mixed, per_path.mean(), rtol=1e-12, atol=0)
    (g_mixed,) = torch.autograd.grad(mixed, x)
    g_each = sum(torch.autograd.grad(loss(x, y, path_idx=p), x)[0] for p in request) / len(request)
    torch.testing.assert_close(g_mixed, g_each, rtol=1e-10, atol=1e-14)
    orders = set()
    for _ in range(12):
        loss(x.detach(), y)
        orders |= {loss.paths[i].order for i in loss.curr_path_idxs}
    assert orders == {1, 2}


def test_target_coefficients_of_first_order_paths_are_cached():
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share="uniform")
    calls = record_calls(loss.jtfs_for(N), "first_order_from_spectra")
    x, y = torch.randn(2, 1, N), torch.randn(2, 1, N)
    n2 = loss.n_second
    first = loss(x, y, path_idx=n2 + 2)
    assert loss(x, y, path_idx=n2 + 2) == first
    assert calls == [[2], [2], [2]]  # estimate, target, estimate again: the target came from the cache
    mixed = loss(x, y, path_idx=[1, n2 + 2])
    assert calls == [[2]] * 4  # the estimate's only: the target's first-order path came from the cache
    y.mul_(2.0)
    assert loss(x, y, path_idx=n2 + 2) != first
    uncached = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share="uniform", cache_target=False)
    torch.testing.assert_close(uncached(x, y, path_idx=n2 + 2), loss(x, y, path_idx=n2 + 2))
    torch.testing.assert_close(uncached(x, y / 2, path_idx=[1, n2 + 2]), mixed)


def test_p_adam_and_p_saga_keep_state_per_first_order_path():
    lr, b1, b2, eps, grad_mult = 1e-3, 0.9, 0.999, 1e-8, 1e3
    torch.manual_seed(0)
    model, model_ref = Toy(), Toy()
    model_ref.load_state_dict(model.state_dict())
    loss = SCRAPLLoss(N, **SMALL, grad_mult=grad_mult, p_adam_b1=b1, p_adam_b2=b2, p_adam_eps=eps,
                      first_order_share="uniform")
    loss.attach_params(model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    n2 = loss.n_second
    paths = [n2, 0, n2 + 2, n2, 3, n2 + 1, n2 + 2, 0, n2] * 2
    y, ours = target_audio(), []
    for p in paths:
        opt.zero_grad()
        loss(model(), y, path_idx=p).backward()
        opt.step()
        ours.append([w.detach().clone() for w in model.parameters()])
    assert set(loss.path_counts) == set(paths)
    assert all(n2 + c in loss.pathwise.states[0]["m"] for c in range(3))
    plain = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share="uniform")
    ref = algorithm1(model_ref, plain, paths, lr, b1, b2, eps, grad_mult)
    for step, (a, b) in enumerate(zip(ours, ref)):
        for wa, wb in zip(a, b):
            torch.testing.assert_close(wa, wb, rtol=1e-10, atol=1e-13, msg=f"step {step + 1}")


def importance_values(n_theta, n_paths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_theta, n_paths, generator=g, dtype=torch.float64) + 0.05


@pytest.mark.parametrize("share", ["uniform", 0.3])
def test_theta_is_redistributes_within_each_order_and_keeps_the_share(share):
    f = 0.2
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, n_theta=2, min_prob_frac=f, first_order_share=share)
    n2, n1, s = loss.n_second, loss.n_first, loss.first_order_share
    C = importance_values(2, loss.n_paths)
    for u in range(2):
        for p in range(loss.n_paths):
            loss.update_prob(p, C[u, p], theta_idx=u)
    q = (C / C.sum(dim=1, keepdim=True)).mean(dim=0)  # eq. 10 over the whole set, no floor
    expected = torch.cat([(1 - s) * ((1 - f) * q[:n2] / q[:n2].sum() + f / n2),
                          s * ((1 - f) * q[n2:] / q[n2:].sum() + f / n1)])
    torch.testing.assert_close(loss.probs, expected, rtol=1e-12, atol=0)
    assert loss.probs[n2:].sum().item() == pytest.approx(s, abs=1e-12)
    assert bool((loss.probs >= f * loss.prior * (1 - 1e-12)).all())
    assert not torch.allclose(loss.probs, loss.prior)  # theta-IS did move mass within the orders
    loss.clear()
    torch.testing.assert_close(loss.probs, loss.prior)


def test_impose_share_without_floor_is_proportional_within_orders():
    q = torch.tensor([1.0, 3.0, 2.0, 6.0], dtype=torch.float64)
    probs = impose_share(q, n_second=2, share=0.4)
    torch.testing.assert_close(probs, torch.tensor([0.15, 0.45, 0.1, 0.3], dtype=torch.float64))


def test_theta_weights_weigh_the_rows_of_eq_10():
    f, w = 0.1, [3.0, 1.0, 0.0]
    C = importance_values(3, 5, seed=1)
    weighted = SCRAPLLoss(N, **SMALL, **PLAIN, n_theta=3, min_prob_frac=f, theta_weights=w)
    for u in range(3):
        for p in range(weighted.n_paths):
            weighted.update_prob(p, C[u, p], theta_idx=u)
    rows = C / C.sum(dim=1, keepdim=True)
    expected = (3 * rows[0] + rows[1]) / 4 * (1 - f) + f / weighted.n_paths
    torch.testing.assert_close(weighted.probs, expected, rtol=1e-12, atol=0)
    # Weights (1, 0, ...) give the probabilities of theta_0 alone.
    only_first = SCRAPLLoss(N, **SMALL, **PLAIN, n_theta=3, theta_weights=[1, 0, 0], first_order_share=0.25)
    single = SCRAPLLoss(N, **SMALL, **PLAIN, n_theta=1, first_order_share=0.25)
    C = importance_values(3, only_first.n_paths, seed=2)
    for p in range(only_first.n_paths):
        single.update_prob(p, C[0, p])
        for u in range(3):
            only_first.update_prob(p, C[u, p], theta_idx=u)
    torch.testing.assert_close(only_first.probs, single.probs, rtol=1e-12, atol=0)
    equal = SCRAPLLoss(N, **SMALL, **PLAIN, n_theta=2, theta_weights=[2.0, 2.0])
    default = SCRAPLLoss(N, **SMALL, **PLAIN, n_theta=2)
    for u in range(2):
        for p in range(5):
            equal.update_prob(p, C[u, p], theta_idx=u)
            default.update_prob(p, C[u, p], theta_idx=u)
    torch.testing.assert_close(equal.probs, default.probs, rtol=1e-14, atol=0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(first_order_share=0.0), ValueError, r"\(0, 1\)"),
    (dict(first_order_share=1.0), ValueError, r"\(0, 1\)"),
    (dict(first_order_share="half"), ValueError, "uniform"),
    (dict(first_order_share=True), TypeError, "first_order_share"),
    (dict(n_theta=2, theta_weights=[1.0]), ValueError, "n_theta=2"),
    (dict(n_theta=2, theta_weights=[1.0, -1.0]), ValueError, "non-negative"),
    (dict(n_theta=2, theta_weights=[0.0, 0.0]), ValueError, "all be 0"),
    (dict(n_theta=2, theta_weights=[1.0, float("nan")]), ValueError, "finite"),
    (dict(n_theta=1, theta_weights=["a"]), ValueError, "numbers"),
])
def test_bad_share_or_theta_weights(kwargs, error, match):
    with pytest.raises(error, match=match):
        SCRAPLLoss(N, **SMALL, **PLAIN, **kwargs)


def test_probability_files_of_the_other_path_set_are_refused(tmp_path):
    second = SCRAPLLoss(N, **SMALL, **PLAIN)
    both = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share=0.3)
    second.save_probs(str(tmp_path / "second.pt"))
    ramp = torch.linspace(1, 2, both.n_paths, dtype=torch.float64)
    both.probs = ramp / ramp.sum()
    both.save_probs(str(tmp_path / "both.pt"))
    with pytest.raises(ValueError, match="5 second-order \\+ 0 first-order paths, expected 5 second-order \\+ 3"):
        both.load_probs(str(tmp_path / "second.pt"))
    with pytest.raises(ValueError, match="path set"):
        second.load_probs(str(tmp_path / "both.pt"))
    uniform = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share="uniform", probs_path=str(tmp_path / "both.pt"))
    torch.testing.assert_close(uniform.probs, both.probs)  # same path set: used as given
    torch.save(second.probs.clone(), tmp_path / "bare.pt")  # a reference tensor of the second-order set
    with pytest.raises(ValueError, match=r"bare tensor of shape \(5,\), expected \(8,\).*3 first-order"):
        both.load_probs(str(tmp_path / "bare.pt"))
    torch.save(torch.full((8,), 1 / 8, dtype=torch.float64), tmp_path / "bare8.pt")
    both.load_probs(str(tmp_path / "bare8.pt"))
    with pytest.raises(ValueError, match="expected \\(5,\\)"):
        second.load_probs(str(tmp_path / "bare8.pt"))


def test_state_carries_first_order_paths():
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share=0.3)
    x = torch.randn(1, 1, N)
    for p in (0, 6, 7):
        loss(x, x, path_idx=p)
    state = loss.state_dict()
    again = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share=0.3)
    again.load_state_dict(state)
    assert dict(again.path_counts) == {0: 1, 6: 1, 7: 1}
    with pytest.raises(ValueError, match="8 paths"):
        SCRAPLLoss(N, **SMALL, **PLAIN).load_state_dict(state)


def toy_synth(theta):
    """(B, 2) -> (B, 1, N): a partial whose amplitude and frequency follow theta."""
    t = torch.arange(N, dtype=theta.dtype) / N
    return (torch.sigmoid(theta[:, :1]) * torch.sin(2 * math.pi * 40 * t * (1 + 0.1 * theta[:, 1:])))[:, None]


def test_theta_is_path_loss_and_curvature_reach_first_order_paths():
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share="uniform", n_theta=2)
    x, y = signals(2)
    for p in (1, loss.n_second + 1):
        torch.testing.assert_close(path_loss(loss)(x.detach(), y, p, 1), loss(x.detach(), y, path_idx=p))
    theta = torch.tensor([[0.3, -0.2]], dtype=torch.float64, requires_grad=True)
    eigs = loss.calc_theta_eigs(loss.n_second + 1, lambda x: theta, toy_synth, {"x": toy_synth(theta.detach() + 0.5)},
                                [theta], n_iter=30)
    assert eigs.shape == (1, 2) and bool(torch.isfinite(eigs).all()) and eigs.abs().sum() > 0


def test_warmup_directories_carry_the_path_set(tmp_path):
    both = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share=0.3, n_theta=2)
    theta = torch.tensor([[0.3, -0.2]], dtype=torch.float64, requires_grad=True)
    n2 = both.n_second
    both.warmup_lc_hvp(lambda x: theta, toy_synth, {"x": toy_synth(theta.detach() + 0.5)}, [theta],
                       start_path_idx=n2, end_path_idx=n2 + 2, save_dir=str(tmp_path), n_iter=10, progress=False)
    assert both.probs[n2:].sum().item() == pytest.approx(0.3, abs=1e-12)
    with pytest.raises(ValueError, match="path set"):
        SCRAPLLoss(N, **SMALL, **PLAIN, n_theta=2).load_probs_from_warmup_dir(str(tmp_path))
    again = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share=0.3, n_theta=2)
    again.load_probs_from_warmup_dir(str(tmp_path))
    torch.testing.assert_close(again.probs, both.probs)


def test_plot_draws_first_order_paths_in_a_strip(tmp_path):
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, first_order_share=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = loss.plot_probs(str(tmp_path / "probs.png"), sample_rate=8192)
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sample_all_paths_first_visits_both_orders():
    loss = SCRAPLLoss(N, **SMALL, **PLAIN, sample_all_paths_first=True, first_order_share=0.1)
    assert first_pass_paths(loss) == list(range(loss.n_paths))
