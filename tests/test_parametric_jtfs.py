"""Learnable Morlet filterbanks: equal to the fixed JTFS at initialisation, differentiable, and valid by construction."""
import pytest
import torch
from torch.func import functional_call

from scrapl_graph.jtfs import JTFS
from scrapl_graph.jtfs.parametric import FAMILIES

CONFIGS = [dict(shape=1024, J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1), dict(shape=4096, J=8, Q1=4, Q2=2, J_fr=2, Q_fr=1, F=2)]


def relative(a, b):
    return ((a - b).flatten(2).norm(dim=-1) / b.flatten(2).norm(dim=-1)).max().item()


@pytest.mark.parametrize("cfg", CONFIGS, ids=["small", "few-frames"])
def test_equal_to_the_fixed_transform_at_initialisation(cfg):
    fixed = JTFS(**cfg, dtype=torch.float64)
    learnable = JTFS(**cfg, dtype=torch.float64, learnable=True)
    x = torch.randn(2, cfg["shape"], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert relative(learnable(x), fixed(x)) < 1e-6
    assert relative(learnable.first_order(x), fixed.first_order(x)) < 1e-6
    assert learnable.keys == fixed.keys and learnable.out_shape == fixed.out_shape


def test_gradients_with_respect_to_the_filter_parameters():
    jtfs = JTFS(256, J=3, Q1=2, Q2=1, J_fr=1, Q_fr=1, dtype=torch.float64, learnable=True)
    x = torch.randn(1, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    names = [n for n, _ in jtfs.named_parameters()]
    start = tuple(p.detach().clone().requires_grad_() for p in jtfs.parameters())

    def paths(*params):
        return functional_call(jtfs, dict(zip(names, params)), (x,))

    assert torch.autograd.gradcheck(paths, start, atol=1e-6, rtol=1e-4, fast_mode=True)


def _family_checks(jtfs):
    for name in FAMILIES:
        family = getattr(jtfs.filterbank, name)
        xi, sigma = family()
        assert torch.isfinite(xi).all() and torch.isfinite(sigma).all()
        assert (sigma > 0).all()
        assert (xi[:-1] > xi[1:]).all(), f"{name}: centre frequencies out of order"
        assert (xi - family.alpha * sigma > family.s_lo).all() and (xi + family.alpha * sigma < family.s_hi).all()


def test_adversarial_updates_keep_every_filter_valid():
    jtfs = JTFS(1024, J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1, dtype=torch.float64, learnable=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1024, dtype=torch.float64, generator=gen)
    _family_checks(jtfs)
    for scale in (3.0, 30.0, 1e4):
        with torch.no_grad():
            for p in jtfs.parameters():
                p.add_(scale * torch.randn(p.shape, dtype=p.dtype, generator=gen))
        _family_checks(jtfs)
        out = jtfs(x)
        out.sum().backward()
        assert torch.isfinite(out).all() and all(torch.isfinite(p.grad).all() for p in jtfs.parameters())


def test_training_moves_the_filters_and_lowers_a_loss():
    torch.manual_seed(3)
    jtfs = JTFS(512, J=4, Q1=4, Q2=2, J_fr=2, Q_fr=1, learnable=True)
    x = torch.randn(2, 512)
    target = 1.5 * jtfs(x).detach()
    opt = torch.optim.Adam(jtfs.parameters(), lr=0.05)
    before = jtfs.filterbank.psi1()[0].detach().clone()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = (jtfs(x) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    assert not torch.equal(jtfs.filterbank.psi1()[0], before)


def test_families_can_be_frozen_and_names_are_checked():
    jtfs = JTFS(1024, J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1, learnable=("psi2",))
    trainable = sorted(n for n, p in jtfs.named_parameters() if p.requires_grad)
    assert trainable == ["filterbank.psi2.raw_sigma", "filterbank.psi2.raw_xi"]
    with pytest.raises(ValueError, match="learnable families"):
        JTFS(1024, J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1, learnable=("psi3",))


def test_frozen_normalisation_drifts_little_over_moderate_moves():
    jtfs = JTFS(1024, J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1, dtype=torch.float64, learnable=True)
    assert max(d.max().item() for d in jtfs.filterbank.normalisation_drift().values()) < 1e-12
    with torch.no_grad():
        for p in jtfs.parameters():
            p.add_(0.5 * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(4)))
    drift = max(d.max().item() for d in jtfs.filterbank.normalisation_drift().values())
    assert drift < 0.05, drift


@pytest.mark.slow
def test_gradients_with_respect_to_the_filter_parameters_every_direction():
    jtfs = JTFS(256, J=3, Q1=2, Q2=1, J_fr=1, Q_fr=1, dtype=torch.float64, learnable=True)
    x = torch.randn(1, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    names = [n for n, _ in jtfs.named_parameters()]
    start = tuple(p.detach().clone().requires_grad_() for p in jtfs.parameters())
    assert torch.autograd.gradcheck(lambda *p: functional_call(jtfs, dict(zip(names, p)), (x,)), start,
                                    atol=1e-6, rtol=1e-4)


def test_jtfs_loss_with_learnable_filters_holds_one_parameter_set():
    from scrapl_graph import JTFSLoss

    torch.manual_seed(5)
    loss = JTFSLoss(1024, J=5, Q1=4, Q2=2, J_fr=2, Q_fr=1, learnable=("psi1", "psi_fr"), first_order=True)
    params = list(loss.parameters())
    assert len(params) == 6 and sum(p.requires_grad for p in params) == 4
    x, y = torch.randn(2, 1, 1024), torch.randn(2, 1, 1024)
    loss(x, y).backward()  # the estimate needs no grad: the filters alone do
    grads = {n: p.grad for n, p in loss.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads.values())
    with pytest.raises(ValueError, match="one parameter set"):
        loss(x.double(), y.double())


def test_jtfs_loss_filter_gradient_matches_the_unchunked_loss():
    from scrapl_graph import JTFSLoss

    torch.manual_seed(6)
    chunked = JTFSLoss(512, J=4, Q1=2, Q2=1, J_fr=1, Q_fr=1, learnable=True, chunk_elements=1).double()
    x, y = torch.randn(2, 1, 512, dtype=torch.float64), torch.randn(2, 1, 512, dtype=torch.float64)
    chunked(x, y).backward()
    jtfs = chunked.jtfs
    S, S_t = jtfs(x.reshape(2, 512)), jtfs(y.reshape(2, 512))
    direct = (S - S_t).flatten(2).norm(dim=-1).mean()
    names = [n for n, p in jtfs.named_parameters()]
    expected = torch.autograd.grad(direct, list(jtfs.parameters()))
    for name, p, g in zip(names, jtfs.parameters(), expected):
        torch.testing.assert_close(p.grad, g, rtol=1e-8, atol=1e-12, msg=name)


def test_regenerated_filters_follow_the_parameters_across_updates_and_repeated_backward():
    jtfs = JTFS(512, J=4, Q1=2, Q2=1, J_fr=1, Q_fr=1, dtype=torch.float64, learnable=True)
    x, y = torch.randn(2, 512, dtype=torch.float64), torch.randn(2, 512, dtype=torch.float64)
    opt = torch.optim.SGD(jtfs.parameters(), lr=0.1)
    for _ in range(3):  # estimate and target in one step, then an update: values must follow the parameters
        opt.zero_grad()
        loss = (jtfs(x) - jtfs(y)).square().sum()
        loss.backward()
        fresh = JTFS(512, J=4, Q1=2, Q2=1, J_fr=1, Q_fr=1, dtype=torch.float64, learnable=True)
        fresh.load_state_dict(jtfs.state_dict())
        (expected,) = torch.autograd.grad((fresh(x) - fresh(y)).square().sum(), [fresh.filterbank.psi1.raw_xi])
        torch.testing.assert_close(jtfs.filterbank.psi1.raw_xi.grad, expected)
        opt.step()
    # Two forward and backward passes without an update in between both work.
    jtfs(x).sum().backward()
    jtfs(x).sum().backward()
    fresh = JTFS(512, J=4, Q1=2, Q2=1, J_fr=1, Q_fr=1, dtype=torch.float64, learnable=True)
    fresh.load_state_dict(jtfs.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(jtfs(x), fresh(x))
