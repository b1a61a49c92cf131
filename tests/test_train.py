"""optimize_graph: it fits chirplet parameters, reports errors, obeys callbacks and checks input."""
import math
import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from grafx.data import GRAFX, NodeConfigs
    from grafx.processors import ZeroPhaseFIREqualizer

from scrapl_graph import PathwiseAdamSAGA
from scrapl_graph.graph import GraphSynth
from scrapl_graph.losses import JTFSLoss, SCRAPLLoss, build_loss
from scrapl_graph.processors import ChirpletSynth
from scrapl_graph.train import (
    normalized_param_error,
    optimize_graph,
    resolve_columns,
)
from _configs import PAPER_Q

N = 2048
SR = 2048.0
JTFS_CONFIG = dict(shape=N, J=8, **PAPER_Q)  # temporal rates down to ~2 Hz at 2048 Hz


def chirplet_synth(with_eq: bool = False, max_shift: int = 0, seed: int = 0) -> GraphSynth:
    types = ["chirplet", "eq"] if with_eq else ["chirplet"]
    graph = GRAFX(config=NodeConfigs(types))
    nodes = [graph.add("in"), graph.add("chirplet")] + ([graph.add("eq")] if with_eq else []) + [graph.add("out")]
    for a, b in zip(nodes[:-1], nodes[1:]):
        graph.connect(a, b)
    processors = {"chirplet": ChirpletSynth.from_preset("fast_am_moderate_fm", sample_rate=SR, num_samples=N,
                                                        f0_hz=256.0, max_shift=max_shift, seed=seed)}
    if with_eq:
        processors["eq"] = ZeroPhaseFIREqualizer(num_magnitude_bins=17)
    return GraphSynth(graph, processors, num_samples=N)


@pytest.fixture(scope="module")
def easy_problem():
    """An aligned chirplet: AM 0.75, FM 0.3 of their ranges (normalized); start in the middle."""
    synth = chirplet_synth()
    true_theta = torch.logit(torch.tensor([[0.75, 0.3]]))
    with torch.no_grad():
        target = synth(true_theta)
    return synth, target, true_theta


# ------------------------------------------------------------------------- optimize_graph
@pytest.mark.slow
@pytest.mark.parametrize("loss_name", ["scrapl", "mss"])
def test_optimize_graph_recovers_chirplet_parameters(easy_problem, loss_name):
    synth, target, true_theta = easy_problem
    loss = SCRAPLLoss(**JTFS_CONFIG) if loss_name == "scrapl" else build_loss("mss")
    theta_init = torch.zeros(1, 2)
    result = optimize_graph(synth, target, loss, theta_init, steps=150, lr=0.1, lr_end=0.01,
                            true_theta=true_theta, progress=False, seed=0)

    assert result.steps == 150 and not result.stopped_early
    assert len(result.history["loss"]) == len(result.history["param_error"]) == len(result.history["time"]) == 150
    assert result.initial_param_error == pytest.approx(0.225, abs=1e-3)
    assert result.final_param_error < 0.3 * result.initial_param_error
    assert max(result.param_error_columns) < 0.1
    assert result.final_param_error == pytest.approx(result.history["param_error"][-1])
    # The deterministic full-tree JTFS distance (SCRAPL's expectation) and MSS both drop.
    check = JTFSLoss(**JTFS_CONFIG) if loss_name == "scrapl" else build_loss("mss")
    with torch.no_grad():
        before, after = check(synth(theta_init), target), check(synth(result.theta), target)
    assert after < 0.5 * before
    assert result.history["time"] == sorted(result.history["time"])


@pytest.mark.parametrize("loss_name", ["scrapl", "mss"])
def test_optimize_graph_short_run_reports_history_and_errors(easy_problem, loss_name):
    """The bookkeeping of a few steps (convergence: the slow test above)."""
    synth, target, true_theta = easy_problem
    loss = SCRAPLLoss(**JTFS_CONFIG) if loss_name == "scrapl" else build_loss("mss")
    result = optimize_graph(synth, target, loss, torch.zeros(1, 2), steps=5, lr=0.1, lr_end=0.01,
                            true_theta=true_theta, progress=False, seed=0)
    assert result.steps == 5 and not result.stopped_early
    assert len(result.history["loss"]) == len(result.history["param_error"]) == len(result.history["time"]) == 5
    assert all(math.isfinite(v) for v in result.history["loss"])
    assert result.initial_param_error == pytest.approx(0.225, abs=1e-3)
    assert result.final_param_error == pytest.approx(result.history["param_error"][-1])
    assert len(result.param_error_columns) == 2 and all(0 <= e <= 1 for e in result.param_error_columns)
    assert not torch.equal(result.theta, torch.zeros(1, 2))
    assert result.history["time"] == sorted(result.history["time"])


def test_scrapl_run_attaches_theta_uses_sgd_and_detaches(easy_problem):
    synth, target, true_theta = easy_problem
    loss = SCRAPLLoss(**JTFS_CONFIG)
    made = []

    def factory(params):
        made.append([p.shape for p in params])
        return torch.optim.SGD(params, lr=0.05)

    seen = []
    result = optimize_graph(synth, target, loss, steps=4, optimizer=factory, progress=False,
                            callbacks=lambda info: seen.append((len(loss.attached_params), loss.step_count)))
    assert made == [[torch.Size([1, 2])]]
    assert seen == [(1, 1), (1, 2), (1, 3), (1, 4)]  # attached during the run, one SCRAPL step per step
    assert loss.attached_params == []  # and detached afterwards
    assert result.param_error_columns is None and result.final_param_error is None


def test_default_optimizers(easy_problem, caplog, monkeypatch):
    synth, target, _ = easy_problem
    kinds = []
    for cls, kind in ((PathwiseAdamSAGA, "pathwise"), (torch.optim.Adam, "adam")):
        original = cls.step
        monkeypatch.setattr(cls, "step", lambda self, *a, _o=original, _k=kind, **kw: kinds.append(_k) or _o(self, *a, **kw))
    optimize_graph(synth, target, SCRAPLLoss(**JTFS_CONFIG), steps=2, progress=False)
    optimize_graph(synth, target, "mss", steps=2, progress=False)
    assert kinds == ["pathwise", "pathwise", "adam", "adam"]  # SCRAPL's own optimizer form: P-Adam/P-SAGA + SGD
    with caplog.at_level("WARNING"):
        optimize_graph(synth, target, SCRAPLLoss(**JTFS_CONFIG), steps=1, optimizer="adam", progress=False)
    assert "plain SGD" in caplog.text


def test_seeded_runs_are_reproducible(easy_problem):
    synth, target, _ = easy_problem
    runs = [optimize_graph(synth, target, SCRAPLLoss(**JTFS_CONFIG), steps=6, progress=False, seed=3).theta
            for _ in range(2)]
    other = optimize_graph(synth, target, SCRAPLLoss(**JTFS_CONFIG), steps=6, progress=False, seed=4).theta
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], other)


def test_only_trainable_columns_move_and_error_columns_select():
    synth = chirplet_synth(with_eq=True)
    true_theta = torch.zeros(1, synth.n_theta)
    true_theta[0, :2] = torch.logit(torch.tensor([0.7, 0.4]))
    with torch.no_grad():
        target = synth(true_theta)
    theta_init = torch.zeros(1, synth.n_theta)
    theta_init[0, 2:] = 0.3  # EQ differs from the truth but stays frozen
    result = optimize_graph(synth, target, "mss", theta_init, trainable="chirplet", steps=5,
                            true_theta=true_theta, progress=False)
    assert result.trainable_columns == [0, 1] and result.error_columns == [0, 1]
    assert torch.equal(result.theta[:, 2:], theta_init[:, 2:])
    assert not torch.equal(result.theta[:, :2], theta_init[:, :2])
    assert len(result.param_error_columns) == 2

    result = optimize_graph(synth, target, "mss", theta_init, trainable=["theta_fm"], error_columns="eq",
                            steps=2, true_theta=true_theta, progress=False)
    assert result.trainable_columns == [1] and result.error_columns == list(range(2, synth.n_theta))
    assert result.theta[0, 0] == 0.0
    assert result.final_param_error == pytest.approx(abs(torch.sigmoid(torch.tensor(0.3)).item() - 0.5), abs=1e-6)


def test_callback_stops_early_and_sees_progress(easy_problem):
    synth, target, true_theta = easy_problem
    infos = []

    def stop_at_three(info):
        infos.append(info)
        return info["step"] == 3

    result = optimize_graph(synth, target, "mss", steps=50, true_theta=true_theta, callbacks=[stop_at_three],
                            progress=False)
    assert result.steps == 3 and result.stopped_early
    assert [i["step"] for i in infos] == [1, 2, 3]
    assert set(infos[0]) == {"step", "steps", "loss", "param_error", "theta", "elapsed_s"}
    assert infos[-1]["theta"].shape == (1, 2) and not infos[-1]["theta"].requires_grad
    assert torch.equal(infos[-1]["theta"], result.theta)
    assert result.final_loss == infos[-1]["loss"]


def test_lr_end_decays_linearly(easy_problem):
    synth, target, _ = easy_problem
    lrs = []

    def factory(params):
        opt = torch.optim.SGD(params, lr=1.0)
        lrs.append(opt)
        return opt

    seen = []
    optimize_graph(synth, target, "mss", steps=5, lr=1.0, lr_end=0.2, optimizer=factory, progress=False,
                   callbacks=lambda info: seen.append(lrs[0].param_groups[0]["lr"]))
    # The lr after each step: the next step's rate, from 1.0 (step 1) to 0.2 (step 5).
    assert seen[:4] == pytest.approx([0.8, 0.6, 0.4, 0.2])


def test_optimize_graph_raises_on_nan_loss(easy_problem):
    synth, target, _ = easy_problem
    with pytest.raises(FloatingPointError, match="step 1"):
        optimize_graph(synth, target, lambda x, y: (x - y).sum() * math.nan, steps=3, progress=False)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(target=torch.zeros(2, N)), ValueError, "batch, channels, samples"),
    (dict(target=torch.zeros(1, 1, N, dtype=torch.long)), TypeError, "floating-point"),
    (dict(target=[0.0] * N), TypeError, "torch.Tensor"),
    (dict(target=torch.full((1, 1, N), math.nan)), ValueError, "NaN"),
    (dict(loss="no_such_loss"), ValueError, "unknown loss"),
    (dict(loss=3), TypeError, "loss must be"),
    (dict(theta_init=torch.zeros(1, 3)), ValueError, r"shape \(B, 2\)"),
    (dict(theta_init=torch.zeros(2, 2)), ValueError, "batch size"),
    (dict(theta_init=torch.zeros(1, 2, dtype=torch.long)), TypeError, "floating-point"),
    (dict(true_theta=torch.zeros(1, 5)), ValueError, "true_theta"),
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=2.5), ValueError, "steps"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(lr_end=-0.1), ValueError, "lr_end"),
    (dict(optimizer="rmsprop"), ValueError, "unknown optimizer"),
    (dict(optimizer=lambda params: "sgd"), TypeError, "Optimizer"),
    (dict(trainable="no_such_processor"), ValueError, "no theta column"),
    (dict(trainable=[0, 7]), ValueError, "out of range"),
    (dict(trainable=[]), ValueError, "empty"),
    (dict(callbacks=["not callable"]), TypeError, "callbacks"),
    (dict(synth="not a synth"), TypeError, "synth must be callable"),
    (dict(target=torch.zeros(1, 1, N // 2)), ValueError, "renders"),
])
def test_optimize_graph_rejects_bad_input(easy_problem, kwargs, error, match):
    synth, target, _ = easy_problem
    args = dict(synth=synth, target=target, loss="mss", steps=2, progress=False)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        optimize_graph(**args)


def test_registry_scrapl_with_paper_defaults_explains_short_signals(easy_problem):
    synth, target, _ = easy_problem
    with pytest.raises(ValueError, match="2\\*\\*J"):
        optimize_graph(synth, target, {"class_path": "scrapl", "init_args": {"shape": N}}, steps=1, progress=False)


# ------------------------------------------------------------------------------ helpers
def test_normalized_param_error():
    theta = torch.logit(torch.tensor([[0.2, 0.5], [0.4, 0.9]]))
    true = torch.logit(torch.tensor([[0.3, 0.5], [0.4, 0.5]]))
    assert normalized_param_error(theta, true).item() == pytest.approx((0.1 + 0 + 0 + 0.4) / 4, abs=1e-6)
    assert normalized_param_error(theta, true, reduce=False).tolist() == pytest.approx([0.05, 0.2], abs=1e-6)
    assert normalized_param_error(theta, true, columns=[1]).item() == pytest.approx(0.2, abs=1e-6)
    with pytest.raises(ValueError):
        normalized_param_error(theta, true[:, :1])
    with pytest.raises(TypeError):
        normalized_param_error(theta, true.long())


def test_resolve_columns():
    labels = ["chirplet[0].theta_am[0]", "chirplet[0].theta_fm[0]", "eq[0].log_magnitude[0]", "eq[0].log_magnitude[1]"]
    assert resolve_columns(None, 4, labels) == [0, 1, 2, 3]
    assert resolve_columns("eq", 4, labels) == [2, 3]
    assert resolve_columns(["theta_fm", "chirplet[0].theta_am"], 4, labels) == [0, 1]
    assert resolve_columns("eq[0].log_magnitude[1]", 4, labels) == [3]
    assert resolve_columns([3, 1, 1], 4, labels) == [1, 3]
    assert resolve_columns(torch.tensor([True, False, False, True]), 4) == [0, 3]
    with pytest.raises(ValueError, match="mask"):
        resolve_columns(torch.tensor([True, False]), 4)
    with pytest.raises(ValueError, match="layout"):
        resolve_columns("eq", 4, None)
    with pytest.raises(TypeError):
        resolve_columns([0, "eq"], 4, labels)
    with pytest.raises(TypeError):
        resolve_columns(torch.tensor([0.5]), 4)
    with pytest.raises(TypeError):
        resolve_columns(2, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_optimize_graph_runs_on_cuda(easy_problem):
    synth, target, true_theta = easy_problem
    result = optimize_graph(synth, target, SCRAPLLoss(**JTFS_CONFIG), steps=20, lr=0.1, device="cuda",
                            true_theta=true_theta, progress=False)
    assert result.theta.device.type == "cuda" and result.final_param_error < result.initial_param_error
    synth.to("cpu")
