"""Learnable filters in SCRAPL: regenerated values exact under any admissible parameters, shared within a
step, and trained through the estimate's and the target's side of the drawn path."""
import pytest
import torch

from scrapl_graph import SCRAPLLoss
from scrapl_graph.jtfs import JTFS

CFG = dict(J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1)
OPTIONS = dict(CFG, use_p_adam=False, use_p_saga=False, optimizer="adam")


def _moved(jtfs, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in jtfs.parameters():
            p.add_(scale * torch.randn(p.shape, dtype=p.dtype, generator=gen))
    return jtfs


@pytest.mark.parametrize("scale", [0.0, 2.0, 50.0])
def test_dropped_gaussian_terms_are_negligible_for_any_admissible_parameters(scale, monkeypatch):
    from scrapl_graph.jtfs import taps

    jtfs = _moved(JTFS(1024, **CFG, dtype=torch.float64, learnable=True), scale, seed=1)
    monkeypatch.setattr(taps, "REACH", float("inf"))  # every term of every tap kept
    dense = JTFS(1024, **CFG, dtype=torch.float64, learnable=True)
    dense.load_state_dict(jtfs.state_dict())
    assert dense.filterbank.psi1_terms.n_terms > jtfs.filterbank.psi1_terms.n_terms
    with torch.no_grad():
        for name in jtfs.filterbank.entries:
            got, expected = jtfs.filterbank.bank_values(name), dense.filterbank.bank_values(name)
            assert (got - expected).abs().max() <= 1e-14 * expected.abs().max(), name


def test_filters_are_regenerated_once_per_shared_scope_and_afresh_outside():
    jtfs = JTFS(1024, **CFG, learnable=True)
    bank = jtfs.filterbank
    assert bank.bank_values("psi1_0") is not bank.bank_values("psi1_0")
    with jtfs.shared_filters():
        assert bank.bank_values("psi1_0") is bank.bank_values("psi1_0")
        assert bank.bank_values("psi2_3_0") is bank.bank_values("psi2_3_0")
        assert bank.frequential(1) is bank.frequential(1)
    assert not bank._memo
    with JTFS(1024, **CFG).shared_filters():  # fixed filters: nothing to share
        pass


def test_scrapl_filter_gradients_include_the_target_side():
    from scrapl_graph.losses.distance import path_distance

    loss = SCRAPLLoss(1024, **OPTIONS, learnable=True, cache_target=True).double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 1024, dtype=torch.float64, generator=gen).requires_grad_()
    y = torch.randn(2, 1, 1024, dtype=torch.float64, generator=gen)
    jtfs = loss.jtfs_for(1024, dtype=torch.float64)
    params = list(jtfs.parameters())
    assert [p is q for p, q in zip(params, loss.parameters())] == [True] * 6
    for idx in (0, 11, loss.n_paths - 1):
        loss.zero_grad()
        x.grad = None
        loss(x, y, path_idx=idx).backward()
        direct = path_distance(jtfs.paths_coefficients(x.reshape(2, 1024), [idx]),
                               jtfs.paths_coefficients(y.reshape(2, 1024), [idx]), 2, None).mean()
        expected = torch.autograd.grad(direct, [x] + params, allow_unused=True)
        torch.testing.assert_close(x.grad, expected[0], rtol=1e-10, atol=1e-14)
        for p, g in zip(params, expected[1:]):
            if g is None:  # e.g. the spin-0 paths read no frequential wavelet
                assert p.grad is None or not p.grad.any()
            else:
                torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-14)


def test_a_cached_target_follows_the_filters_it_was_computed_with():
    torch.manual_seed(4)
    loss = SCRAPLLoss(1024, **OPTIONS, learnable=("psi1", "psi2"))
    x, y = torch.randn(2, 1, 1024), torch.randn(2, 1, 1024)
    opt = torch.optim.SGD(loss.parameters(), lr=1e3)
    with torch.no_grad():
        before = loss(x, y, path_idx=5)  # caches the target's path
    loss(x, y, path_idx=5).backward()
    opt.step()
    with torch.no_grad():
        after = loss(x, y, path_idx=5)
    fresh = SCRAPLLoss(1024, **OPTIONS, learnable=("psi1", "psi2"))
    fresh.load_state_dict(loss.state_dict())
    with torch.no_grad():
        expected = fresh(x, y, path_idx=5)
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, expected)


def test_learnable_scrapl_holds_one_transform_and_trains_with_the_pathwise_optimizer():
    torch.manual_seed(5)
    loss = SCRAPLLoss(1024, **CFG, learnable=True)
    x, y = torch.randn(2, 1, 1024, requires_grad=True), torch.randn(2, 1, 1024)
    opt = loss.make_optimizer(list(loss.parameters()), lr=1e-3)
    start = [p.detach().clone() for p in loss.parameters()]
    for step in range(3):
        opt.zero_grad()
        loss(x, y).backward()
        opt.step()
    assert any(not torch.equal(p, s) for p, s in zip(loss.parameters(), start))
    with pytest.raises(ValueError, match="one parameter set"):
        loss(x.double(), y.double())


def test_batched_gradients_through_learnable_filters_match_row_by_row():
    # theta-IS differentiates through a learnable scattering encoder with batched gradients (vmap).
    jtfs = JTFS(512, J=4, Q1=2, Q2=1, J_fr=1, Q_fr=1, dtype=torch.float64, learnable=True)
    x = torch.randn(2, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    out = jtfs.paths_coefficients(x, [0, 3, 5])
    params = list(jtfs.parameters())
    rows = torch.randn((3,) + out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    batched = torch.autograd.grad(out, params, rows, is_grads_batched=True, retain_graph=True)
    for k in range(3):
        single = torch.autograd.grad(out, params, rows[k], retain_graph=True)
        for b, s in zip(batched, single):
            torch.testing.assert_close(b[k], s)
