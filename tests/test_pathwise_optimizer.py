"""P-Adam / P-SAGA in optimizer form: Algorithm 1, equality with the hook form, resume, misuse."""
import io

import pytest
import torch

from scrapl_graph import PathwiseAdamSAGA, SCRAPLLoss
from test_scrapl_loss import N, SMALL, Toy, algorithm1, target_audio


def _train(model, loss, opt, steps, start=0, noise=True):
    y = target_audio()
    paths = []
    for step in range(start, start + steps):
        opt.zero_grad()
        x = model()
        if noise:
            x = x + 0.01 * torch.randn(2, 1, N, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        loss(x, y).backward()
        opt.step()
        paths.append(loss.curr_path_idx)
    return paths


@pytest.mark.parametrize("use_p_adam, use_p_saga", [(True, True), (False, True)])
def test_optimizer_form_matches_algorithm_1(use_p_adam, use_p_saga):
    lr, b1, b2, eps, grad_mult = 1e-3, 0.9, 0.999, 1e-8, 1e3
    torch.manual_seed(0)
    model, model_ref = Toy(), Toy()
    model_ref.load_state_dict(model.state_dict())
    loss = SCRAPLLoss(N, **SMALL, grad_mult=grad_mult, use_p_adam=use_p_adam, use_p_saga=use_p_saga,
                      p_adam_b1=b1, p_adam_b2=b2, p_adam_eps=eps)
    opt = loss.make_optimizer(model.parameters(), lr=lr)
    assert isinstance(opt, PathwiseAdamSAGA)
    ours = []
    paths = []
    for _ in range(40):
        paths += _train(model, loss, opt, 1, noise=False)
        ours.append([w.detach().clone() for w in model.parameters()])
    assert 3 < len(set(paths)) < len(paths)
    plain = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, grad_mult=1.0)
    ref = algorithm1(model_ref, plain, paths, lr, b1, b2, eps, grad_mult, use_p_adam, use_p_saga)
    for step, (a, b) in enumerate(zip(ours, ref)):
        for wa, wb in zip(a, b):
            torch.testing.assert_close(wa, wb, rtol=1e-10, atol=1e-13, msg=f"step {step + 1}")


def test_optimizer_and_hook_forms_are_bit_identical_with_weight_decay():
    trajectories = []
    for form in ("hooks", "optimizer"):
        torch.manual_seed(0)
        model = Toy()
        loss = SCRAPLLoss(N, **SMALL, grad_mult=1e3)
        if form == "hooks":
            loss.attach_params(model.parameters())
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, weight_decay=1e-2)
        else:
            opt = PathwiseAdamSAGA(model.parameters(), lr=1e-3, weight_decay=1e-2, loss=loss)
        _train(model, loss, opt, 25)
        trajectories.append([w.detach().clone() for w in model.parameters()])
    for a, b in zip(*trajectories):
        assert torch.equal(a, b)


def _fresh(seed):
    torch.manual_seed(seed)
    model = Toy()
    loss = SCRAPLLoss(N, **SMALL, grad_mult=1e3)
    return model, loss, loss.make_optimizer(model.parameters(), lr=1e-3, weight_decay=1e-2)


def test_optimizer_form_resume_is_bit_exact():
    model, loss, opt = _fresh(0)
    _train(model, loss, opt, 30)
    uninterrupted = [w.detach().clone() for w in model.parameters()]

    model, loss, opt = _fresh(0)
    _train(model, loss, opt, 15)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "loss": loss.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    assert checkpoint["loss"]["_extra_state"]["pathwise"] == []  # the moments live in the optimizer

    model, loss, opt = _fresh(999)
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["opt"])
    loss.load_state_dict(checkpoint["loss"])
    _train(model, loss, opt, 15, start=15)
    for a, b in zip(uninterrupted, model.parameters()):
        assert torch.equal(a, b)
    n_weights = sum(w.numel() for w in model.parameters())
    assert opt.pathwise_state_bytes() == (3 * len(loss.path_counts) + 1) * n_weights * 8


def test_optimizer_form_refuses_a_step_without_a_new_path():
    model, loss, opt = _fresh(0)
    with pytest.raises(RuntimeError, match="training forward"):
        opt.step()
    _train(model, loss, opt, 1)
    opt.zero_grad()
    for w in model.parameters():
        w.grad = torch.zeros_like(w)
    with pytest.raises(RuntimeError, match="twice"):
        opt.step()


def test_optimizer_needs_a_scrapl_loss_and_valid_settings():
    params = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match="SCRAPL loss"):
        PathwiseAdamSAGA(params, lr=0.1, loss=torch.nn.MSELoss())
    loss = SCRAPLLoss(N, **SMALL)
    with pytest.raises(ValueError, match="lr"):
        PathwiseAdamSAGA(params, lr=0.0, loss=loss)
    with pytest.raises(ValueError, match="weight_decay"):
        PathwiseAdamSAGA(params, lr=0.1, weight_decay=-1.0, loss=loss)


# ---------------------------------------------------------------- optimizer="adam"
def test_adam_option_makes_one_adam_for_all_paths():
    torch.manual_seed(0)
    loss = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, paths_per_step=2, optimizer="adam")
    model, reference = Toy(), Toy()
    reference.load_state_dict(model.state_dict())
    opt = loss.make_optimizer(model.parameters(), lr=0.01, weight_decay=0.1)
    assert type(opt) is torch.optim.Adam
    ref_opt = torch.optim.Adam(reference.parameters(), lr=0.01, weight_decay=0.1)
    y = target_audio()
    for step in range(3):  # the same draws for both: the loss is evaluated on both models with one path list
        opt.zero_grad()
        ref_opt.zero_grad()
        loss(model(), y).backward()
        loss(reference(), y, path_idx=loss.curr_path_idxs).backward()
        opt.step()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="adam"), "use_p_adam=False and use_p_saga=False"),
    (dict(optimizer="adam", use_p_adam=False), "use_p_adam=False and use_p_saga=False"),
    (dict(optimizer="sgd"), "optimizer must be one of"),
])
def test_adam_option_refuses_per_path_state(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SCRAPLLoss(N, **SMALL, **kwargs)
