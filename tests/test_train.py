"""optimize_graph / train_predictor: they fit chirplet parameters, report errors, obey callbacks and check input."""
import math
import warnings

import pytest
import torch
from torch import nn

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
    train_predictor,
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


# ------------------------------------------------------------------------ train_predictor
class ConstantEncoder(nn.Module):
    """Predicts the same learnable theta for every input: training must move it to the data's theta."""

    def __init__(self, n_theta: int = 2):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(n_theta))

    def forward(self, audio):
        return self.theta.expand(audio.shape[0], -1)


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.AvgPool1d(64), nn.Flatten(), nn.Linear(N // 64, 2))

    def forward(self, audio):
        return self.net(audio)


def dataset(count: int, theta=None, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    if theta is None:
        theta = torch.logit(torch.rand(count, 2, generator=gen).clamp(0.05, 0.95))
    else:
        theta = theta.expand(count, -1).clone()
    with torch.no_grad():
        audio = chirplet_synth()(theta)
    return audio, theta


@pytest.mark.slow
@pytest.mark.parametrize("loss_name", ["scrapl", "mss"])
def test_train_predictor_learns_a_constant_theta(loss_name):
    true_theta = torch.logit(torch.tensor([[0.75, 0.3]]))
    train, val = dataset(8, true_theta), dataset(4, true_theta)
    loss = SCRAPLLoss(**JTFS_CONFIG) if loss_name == "scrapl" else "mss"
    encoder = ConstantEncoder()
    result = train_predictor(encoder, chirplet_synth(), loss, train, val, epochs=60, batch_size=8, lr=0.1,
                             lr_end=0.01, progress=False, seed=0)
    errors = result.history["val_param_error"]
    assert result.steps == 60 and result.epochs == 60 and not result.stopped_early
    assert len(errors) == len(result.history["val_loss"]) == len(result.history["train_loss"]) == 60
    assert errors[-1] < 0.3 * 0.225  # started from the middle: error 0.225
    assert result.final_val_param_error == errors[-1]
    assert len(result.history["val_param_error_columns"][-1]) == 2
    if loss_name == "scrapl":
        assert loss.attached_params == []


@pytest.mark.parametrize("loss_name", ["scrapl", "mss"])
def test_train_predictor_short_run_reports_history(loss_name):
    """The bookkeeping of a few epochs (learning: the slow test above)."""
    true_theta = torch.logit(torch.tensor([[0.75, 0.3]]))
    train, val = dataset(8, true_theta), dataset(4, true_theta)
    loss = SCRAPLLoss(**JTFS_CONFIG) if loss_name == "scrapl" else "mss"
    result = train_predictor(ConstantEncoder(), chirplet_synth(), loss, train, val, epochs=3, batch_size=8, lr=0.1,
                             lr_end=0.01, progress=False, seed=0)
    errors = result.history["val_param_error"]
    assert result.steps == 3 and result.epochs == 3 and not result.stopped_early
    assert len(errors) == len(result.history["val_loss"]) == len(result.history["train_loss"]) == 3
    assert all(0 <= e <= 1 for e in errors) and all(math.isfinite(v) for v in result.history["train_loss"])
    assert result.final_val_param_error == errors[-1]
    assert len(result.history["val_param_error_columns"][-1]) == 2
    if loss_name == "scrapl":
        assert loss.attached_params == []


def test_train_predictor_reports_validation_and_callbacks():
    train, val = dataset(12, seed=1), dataset(6, seed=2)
    events = []

    def callback(info):
        events.append((info["event"], info["epoch"], info["step"]))
        if info["event"] == "epoch":
            assert 0.0 <= info["val_param_error"] <= 1.0
            assert math.isfinite(info["val_loss"]) and math.isfinite(info["train_loss"])
        return info["event"] == "epoch" and info["epoch"] == 2

    loss = SCRAPLLoss(**JTFS_CONFIG)
    result = train_predictor(TinyEncoder(), chirplet_synth(), loss, train, val, epochs=5, batch_size=4,
                             callbacks=callback, progress=False)
    assert result.stopped_early and result.epochs == 2 and result.steps == 6
    assert events == [("step", 1, 1), ("step", 1, 2), ("step", 1, 3), ("epoch", 1, 3),
                      ("step", 2, 4), ("step", 2, 5), ("step", 2, 6), ("epoch", 2, 6)]
    assert len(result.history["step_loss"]) == 6
    assert result.best_epoch in (1, 2)


def test_train_predictor_max_steps_batches_and_no_true_theta():
    audio, theta = dataset(8, seed=3)
    batches = [{"audio": audio[:4], "theta": theta[:4]}, (audio[4:],)]  # a list of batches, re-used every epoch
    result = train_predictor(TinyEncoder(), chirplet_synth(), "mss", batches, audio[:4], epochs=10, max_steps=3,
                             progress=False)
    assert result.steps == 3 and result.epochs == 2 and result.stopped_early
    assert result.history["val_param_error"] == [None, None]  # validation audio without true thetas
    assert len(result.history["val_loss"]) == 2
    assert result.best_epoch in (1, 2)


def test_train_predictor_restore_best():
    train, val = dataset(8, seed=4), dataset(4, seed=5)
    snapshots = []
    encoder = TinyEncoder()
    result = train_predictor(encoder, chirplet_synth(), "mss", train, val, epochs=4, batch_size=8, lr=0.05,
                             restore_best=True, progress=False,
                             callbacks=lambda info: info["event"] == "epoch" and snapshots.append(
                                 {k: v.clone() for k, v in encoder.state_dict().items()}))
    best = snapshots[result.best_epoch - 1]
    assert all(torch.equal(best[k], v) for k, v in encoder.state_dict().items())
    assert result.history["val_param_error"][result.best_epoch - 1] == min(result.history["val_param_error"])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(encoder=lambda audio: audio), TypeError, "nn.Module"),
    (dict(synth=None), TypeError, "synth must be callable"),
    (dict(train_data="audio.wav"), TypeError, "train_data"),
    (dict(train_data=(torch.zeros(4, 1, N), torch.zeros(3, 2))), ValueError, "theta"),
    (dict(train_data=torch.zeros(4, N)), ValueError, "batch, channels, samples"),
    (dict(train_data=[]), ValueError, "no batch"),
    (dict(train_data=[torch.zeros(2, 1, N)], val_data=[]), ValueError, "no batch"),
    (dict(train_data=[[torch.zeros(2, 1, N)] * 3]), TypeError, "batch must be"),
    (dict(encoder=nn.Linear(N, 3)), ValueError, r"theta of shape"),
    (dict(encoder=nn.Identity()), ValueError, "no trainable parameters"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(max_steps=-1), ValueError, "max_steps"),
    (dict(loss="unknown"), ValueError, "unknown loss"),
    (dict(error_columns="nope"), ValueError, "no theta column"),
])
def test_train_predictor_rejects_bad_input(kwargs, error, match):
    class Flat(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, audio):
            return self.inner(audio[:, 0])

    args = dict(encoder=TinyEncoder(), synth=chirplet_synth(), loss="mss", train_data=torch.zeros(4, 1, N),
                val_data=None, epochs=1, progress=False)
    if isinstance(kwargs.get("encoder"), nn.Linear):
        kwargs = dict(kwargs, encoder=Flat(kwargs["encoder"]))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        train_predictor(**args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_both_loops_run_on_cuda(easy_problem):
    synth, target, true_theta = easy_problem
    result = optimize_graph(synth, target, SCRAPLLoss(**JTFS_CONFIG), steps=20, lr=0.1, device="cuda",
                            true_theta=true_theta, progress=False)
    assert result.theta.device.type == "cuda" and result.final_param_error < result.initial_param_error
    train, val = dataset(4, seed=6), dataset(2, seed=7)
    out = train_predictor(TinyEncoder(), chirplet_synth(), SCRAPLLoss(**JTFS_CONFIG), train, val, epochs=1,
                          device="cuda", progress=False)
    assert out.history["val_param_error"][0] is not None
    synth.to("cpu")
