"""LossSum: weighted sums of losses; with SCRAPL, P-Adam/P-SAGA act on the SCRAPL gradient alone, in both forms."""
import math
import pathlib

import pytest
import torch
import torch.distributed as dist
from torch import nn

from scrapl_graph import PathwiseAdamSAGA
from scrapl_graph.graph import GraphSynth
from scrapl_graph.io import build_object, load_config
from scrapl_graph.losses import LossSum, SCRAPLLoss, build_loss, scrapl_term_of
from scrapl_graph.processors import ChirpletSynth
from scrapl_graph.scrapl import PathwiseConfig, SideGradients
from scrapl_graph.scrapl.pathwise import new_state, pathwise_step
from scrapl_graph.train import optimize_graph
from test_scrapl_loss import N, SMALL, Toy, target_audio

GRAD_MULT, LR, WEIGHT = 1e3, 1e-3, 0.3
SCRAPL_SPEC = {"class_path": "scrapl", "init_args": dict(shape=N, **SMALL, grad_mult=GRAD_MULT)}


class MeanSquare(nn.Module):
    """An analytic second term: mean((input - target)^2)."""

    def forward(self, input, target):
        return ((input - target) ** 2).mean()


def scrapl_plus_esr(weight=WEIGHT):
    return LossSum({"scrapl": SCRAPL_SPEC, "esr": "esr"}, weights={"esr": weight})


# ------------------------------------------------------------------ building
def test_built_from_a_yaml_config_through_build_loss_and_build_object(tmp_path):
    path = tmp_path / "loss.yaml"
    path.write_text(f"""
loss:
  class_path: scrapl_graph.losses.LossSum
  init_args:
    terms:
      scrapl: {{class_path: scrapl, init_args: {{shape: {N}, J: 3, Q1: 2, Q2: 1, J_fr: 1, Q_fr: 1}}}}
      mss: {{class_path: mss_log_linear, init_args: {{fft_sizes: [64, 128], hop_sizes: [16, 32],
                                                     win_lengths: [64, 128]}}}}
      esr: esr
    weights: {{mss: 0.1, esr: 2.0e-1}}
""")
    spec = load_config(str(path))["loss"]
    for loss in (build_loss(spec), build_loss({**spec, "class_path": "loss_sum"})):  # import path, registry name
        assert isinstance(loss, LossSum) and list(loss.terms) == ["scrapl", "mss", "esr"]
        assert loss.weights == {"scrapl": 1.0, "mss": 0.1, "esr": 0.2}
        assert scrapl_term_of(loss) is loss.scrapl_term is loss.terms["scrapl"] and loss.scrapl_name == "scrapl"
        assert callable(getattr(loss, "make_optimizer", None)) and callable(getattr(loss, "manual_seed", None))
    # build_object alone: nested importable specs built first, the registry name left to LossSum.
    plain = build_object({"class_path": "scrapl_graph.losses.LossSum",
                          "init_args": {"terms": {"stft": {"class_path": "auraloss.freq.STFTLoss",
                                                           "init_args": {"fft_size": 64, "hop_size": 16,
                                                                         "win_length": 64}},
                                                  "esr": "esr"}}})
    assert isinstance(plain, LossSum) and plain.scrapl_term is None and scrapl_term_of(plain) is None
    assert not hasattr(plain, "make_optimizer") and not hasattr(plain, "attach_params")  # a plain loss


def test_the_shipped_config_builds():
    config = pathlib.Path(__file__).resolve().parents[1] / "examples" / "configs" / "variants" / "scrapl_plus_mss.yaml"
    loss = build_loss(load_config(str(config))["model"]["loss"])
    assert loss.weights == {"scrapl": 1.0, "mss": 0.1} and loss.scrapl_term.n_theta == 2


def test_value_and_logged_terms():
    loss = scrapl_plus_esr()
    x, y = torch.randn(2, 1, N, dtype=torch.float64), target_audio()
    value = loss(x, y)
    scrapl, esr = loss.last_values["scrapl"], loss.last_values["esr"]
    torch.testing.assert_close(esr, build_loss("esr")(x, y))
    torch.testing.assert_close(loss.last_weighted["esr"], WEIGHT * esr)
    torch.testing.assert_close(value, scrapl + WEIGHT * esr)
    assert not any(v.requires_grad for v in loss.last_values.values())


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(terms={}), ValueError, "non-empty"),
    (dict(terms={"mss": "no_such_loss"}), ValueError, "terms.mss: unknown loss 'no_such_loss'"),
    (dict(terms={"a.b": "esr"}), ValueError, "identifier"),
    (dict(terms={"esr": "esr"}, weights={"mss": 1.0}), ValueError, "no term named 'mss'"),
    (dict(terms={"esr": "esr"}, weights={"esr": -1.0}), ValueError, "weights.esr must be a finite number >= 0"),
    (dict(terms={"esr": "esr"}, weights={"esr": math.nan}), ValueError, "finite"),
    (dict(terms={"esr": "esr"}, weights={"esr": math.inf}), ValueError, "finite"),
    (dict(terms={"a": SCRAPL_SPEC, "b": SCRAPL_SPEC}), ValueError, "at most one SCRAPL term, got 2"),
    (dict(terms={"esr": "esr", "p": "p_loss"}), ValueError, "compare the same thing"),
    (dict(terms={"esr": {"class_path": "stft", "init_args": {"fft_sizee": 64}}}), TypeError, "terms.esr: stft"),
])
def test_bad_input_gets_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        LossSum(**kwargs)
    with pytest.raises(error, match=match):  # the same through the registry, after its config path
        build_loss({"class_path": "loss_sum", "init_args": kwargs})


def test_a_sum_holding_scrapl_is_no_term_of_another():
    with pytest.raises(ValueError, match="cannot be a term"):
        LossSum({"inner": scrapl_plus_esr(), "esr": "esr"})


# ------------------------------------------------------------- gradients
def _grads(model, value):
    return torch.autograd.grad(value, list(model.parameters()))


def test_without_scrapl_the_gradient_is_the_ordinary_one():
    torch.manual_seed(0)
    model = Toy()
    loss = LossSum({"esr": "esr", "ms": MeanSquare()}, weights={"esr": 2.0, "ms": 0.5})
    y = target_audio()
    expected = _grads(model, 2.0 * build_loss("esr")(model(), y) + 0.5 * MeanSquare()(model(), y))
    loss(model(), y).backward()
    for param, g in zip(model.parameters(), expected):
        torch.testing.assert_close(param.grad, g, rtol=1e-12, atol=0)


def test_with_scrapl_but_no_bound_parameters_the_gradient_is_the_ordinary_one():
    torch.manual_seed(0)
    model = Toy()
    loss, y = scrapl_plus_esr(), target_audio()
    value = loss(model(), y)
    path = loss.scrapl_term.curr_path_idx
    expected = _grads(model, loss.scrapl_term(model(), y, path_idx=path) + WEIGHT * build_loss("esr")(model(), y))
    value.backward()
    for param, g in zip(model.parameters(), expected):
        torch.testing.assert_close(param.grad, g, rtol=1e-12, atol=0)


def _train(form, steps):
    """``steps`` steps of SCRAPL + WEIGHT * ESR on the float64 toy; the paths drawn and the weights after each."""
    torch.manual_seed(0)
    model, loss, y = Toy(), scrapl_plus_esr(), target_audio()
    initial = [w.detach().clone() for w in model.parameters()]
    if form == "optimizer":
        opt = loss.make_optimizer(model.parameters(), lr=LR)
        assert isinstance(opt, PathwiseAdamSAGA)
    else:
        loss.attach_params(model.parameters())
        opt = torch.optim.SGD(model.parameters(), lr=LR)
    paths, trajectory = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss(model(), y).backward()
        opt.step()
        paths.append(loss.scrapl_term.curr_path_idx)
        trajectory.append([w.detach().clone() for w in model.parameters()])
    return initial, paths, trajectory


@pytest.mark.parametrize("form", ["optimizer", "hooks"])
def test_first_step_is_pathwise_of_scrapl_plus_the_weighted_other_gradient(form):
    """Step 1, by hand: P-Adam on a first visit gives G / sqrt(eps + G^2) with G = grad_mult * g_scrapl,
    P-SAGA passes it on, and the ESR gradient is added after: w_1 = w_0 - lr * (that + WEIGHT * g_esr)."""
    initial, (path,), [after] = _train(form, 1)
    model = Toy()
    with torch.no_grad():
        for w, w0 in zip(model.parameters(), initial):
            w.copy_(w0)
    y = target_audio()
    g_scrapl = _grads(model, SCRAPLLoss(N, **SMALL)(model(), y, path_idx=path))
    g_esr = _grads(model, build_loss("esr")(model(), y))
    for w0, w1, gs, ge in zip(initial, after, g_scrapl, g_esr):
        big = GRAD_MULT * gs
        torch.testing.assert_close(w1, w0 - LR * (big / torch.sqrt(1e-8 + big * big) + WEIGHT * ge),
                                   rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("form", ["optimizer", "hooks"])
def test_steps_replay_the_pathwise_equations_on_the_scrapl_gradient_alone(form):
    initial, paths, trajectory = _train(form, 8)
    assert len(set(paths)) > 1 and len(set(paths)) < len(paths)  # new and revisited paths
    model, y, esr = Toy(), target_audio(), build_loss("esr")
    plain = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, grad_mult=1.0)
    cfg = PathwiseConfig(plain.n_paths, grad_mult=GRAD_MULT)
    params = list(model.parameters())
    states = [new_state() for _ in params]
    with torch.no_grad():
        for w, w0 in zip(params, initial):
            w.copy_(w0)
    for k, (path, expected) in enumerate(zip(paths, trajectory), start=1):
        g_scrapl = _grads(model, plain(model(), y, path_idx=path))
        g_esr = _grads(model, esr(model(), y))
        with torch.no_grad():
            for w, state, gs, ge in zip(params, states, g_scrapl, g_esr):
                w -= LR * (pathwise_step(state, GRAD_MULT * gs, path, k, cfg) + WEIGHT * ge)
        for w, w_expected in zip(params, expected):
            torch.testing.assert_close(w, w_expected, rtol=1e-10, atol=1e-13, msg=f"step {k}")


def test_side_gradients_are_averaged_over_processes_in_the_optimizer_form_only(monkeypatch):
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    local = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    other_process = torch.tensor([3.0, 4.0, 5.0], dtype=torch.float64)
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda t: t.add_(other_process))  # the sum over two processes
    side = SideGradients()
    side.bind_optimizer([w])
    side.stash((w * local).sum())
    torch.testing.assert_close(side.take()[w], (local + other_process) / 2)
    assert side.take() == {}  # taken once
    side.attach_hooks([w])  # hooks see the local gradient: the all-reduce of DDP follows them
    side.stash((w * local).sum())
    assert side.take() == {}
    (2 * w).sum().backward()
    torch.testing.assert_close(w.grad, 2 + local)


def test_state_dict_holds_the_scrapl_state():
    torch.manual_seed(0)
    model, loss, y = Toy(), scrapl_plus_esr(), target_audio()
    opt = loss.make_optimizer(model.parameters(), lr=LR)
    for _ in range(3):
        opt.zero_grad()
        loss(model(), y).backward()
        opt.step()
    fresh = scrapl_plus_esr()
    fresh.load_state_dict(loss.state_dict())
    assert fresh.scrapl_term.step_count == 3

    def next_paths(sum_loss):
        with torch.no_grad():
            return [sum_loss(model(), y) is not None and sum_loss.scrapl_term.curr_path_idx for _ in range(6)]

    assert next_paths(fresh) == next_paths(loss)  # the sampler's stream goes on where it was


# ------------------------------------------------------------ training loop
def _optimize(seed, optimizer=None):
    synth = GraphSynth.chain({"chirplet": ChirpletSynth(sample_rate=8192, num_samples=1024, f0_hz=512, max_shift=0)},
                             num_samples=1024)
    with torch.no_grad():
        target = synth(torch.tensor([[0.5, -0.5]]))
    loss = build_loss({"class_path": "loss_sum", "init_args": {
        "terms": {"scrapl": {"class_path": "scrapl", "init_args": dict(shape=1024, **SMALL, grad_mult=1e8)},
                  "mss": {"class_path": "mss_linear", "init_args": dict(fft_sizes=[64, 128], hop_sizes=[16, 32],
                                                                         win_lengths=[64, 128])}},
        "weights": {"mss": 0.1}}})
    result = optimize_graph(synth, target, loss, steps=5, lr=0.05, optimizer=optimizer, progress=False, seed=seed)
    return result, loss


def test_optimize_graph_with_a_sum_uses_the_scrapl_optimizer_and_repeats_with_a_seed():
    first, loss = _optimize(seed=3)
    second, _ = _optimize(seed=3)
    other, _ = _optimize(seed=4)
    assert first.optimizer_name == "PathwiseAdamSAGA" and loss.scrapl_term.step_count == 5
    assert all(math.isfinite(v) for v in first.history["loss"])
    assert torch.equal(first.theta, second.theta) and first.history["loss"] == second.history["loss"]
    assert not torch.equal(first.theta, other.theta)
    hooks, loss = _optimize(seed=3, optimizer="sgd")  # the hook form: attached for the run, detached after it
    assert hooks.optimizer_name == "SGD" and math.isfinite(hooks.history["loss"][-1])
    assert loss.scrapl_term.attached_params == [] and not loss.side_gradients.bound


def test_a_sum_whose_scrapl_term_uses_adam_is_a_plain_sum():
    scrapl = SCRAPLLoss(N, **SMALL, use_p_adam=False, use_p_saga=False, optimizer="adam")
    loss = LossSum({"scrapl": scrapl, "mse": nn.MSELoss()}, weights={"mse": 0.5})
    model = Toy()
    opt = loss.make_optimizer(model.parameters(), lr=0.01)
    assert type(opt) is torch.optim.Adam
    y = target_audio()
    loss(model(), y).backward()  # the whole sum's gradient, nothing stashed aside
    path = scrapl.curr_path_idx
    expected = torch.autograd.grad(scrapl(model(), y, path_idx=path) + 0.5 * nn.functional.mse_loss(model(), y),
                                   list(model.parameters()))
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g)
