"""train_predictor on Lightning: it learns, reports per-epoch metrics, resumes, and checks its input."""
import math
import os

import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from scrapl_graph.graph import GraphSynth  # noqa: E402
from scrapl_graph.lightning import TensorDataModule, train_predictor  # noqa: E402
from scrapl_graph.losses import SCRAPLLoss  # noqa: E402
from scrapl_graph.processors import ChirpletSynth  # noqa: E402
from _lightning_fixtures import SCRAPL_TINY  # noqa: E402

N = 2048
SR = 2048.0
TRUE_THETA = torch.logit(torch.tensor([[0.75, 0.3]]))  # AM at 0.75, FM at 0.3 of their ranges
AM, FM = "val/theta_l1/chirplet[0].theta_am[0]", "val/theta_l1/chirplet[0].theta_fm[0]"


def chirplet_synth(max_shift: int = 0, seed: int = 0) -> GraphSynth:
    chirplet = ChirpletSynth.from_preset("fast_am_moderate_fm", sample_rate=SR, num_samples=N, f0_hz=256.0,
                                         max_shift=max_shift, seed=seed)
    return GraphSynth.chain({"chirplet": chirplet}, num_samples=N)


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
    """``(audio, theta)``: ``count`` chirplets of random thetas, or all of ``theta``."""
    if theta is None:
        gen = torch.Generator().manual_seed(seed)
        theta = torch.logit(torch.rand(count, 2, generator=gen).clamp(0.05, 0.95))
    else:
        theta = theta.expand(count, -1).clone()
    with torch.no_grad():
        return chirplet_synth()(theta), theta


def quiet(**kwargs):
    return dict(progress=False, accelerator="cpu", **kwargs)


def test_learns_a_constant_theta():
    train, val = dataset(8, TRUE_THETA), dataset(4, TRUE_THETA)
    result = train_predictor(ConstantEncoder(), chirplet_synth(), "mss", train, val, epochs=30, batch_size=8,
                             lr=0.1, lr_end=0.01, val_metrics=(), **quiet())
    errors = result.history["val/theta_l1"]
    assert result.steps == 30 and result.epochs == 30 and not result.stopped_early
    # From the middle of both ranges the error is (250 + 200) / 2 = 225 permille; epoch 1 ran one step.
    assert errors[0] < 225.0 and errors[-1] < 0.3 * 225.0
    assert result.last(AM) < 60 and result.last(FM) < 60
    assert result.encoder is result.model.encoder


@pytest.mark.slow
def test_scrapl_learns_a_constant_theta():
    train, val = dataset(8, TRUE_THETA), dataset(4, TRUE_THETA)
    loss = SCRAPLLoss(shape=N, J=8, Q1=8, Q2=2, J_fr=3, Q_fr=2)
    result = train_predictor(ConstantEncoder(), chirplet_synth(), loss, train, val, epochs=60, batch_size=8, lr=0.1,
                             lr_end=0.01, val_metrics=(), **quiet())
    assert result.history["val/theta_l1"][-1] < 0.3 * 225.0
    assert loss.attached_params == []  # its own optimizer form, no hooks left behind


def test_history_rows_and_metrics():
    train, val = dataset(12, seed=1), dataset(6, seed=2)
    rows = []
    result = train_predictor(TinyEncoder(), chirplet_synth(), "mss", train, val, epochs=2, batch_size=4,
                             on_epoch=rows.append, **quiet())
    history = result.history
    assert result.steps == 6 and result.epochs == 2 and not result.stopped_early
    assert len(result.step_losses) == 6 and all(math.isfinite(v) for v in result.step_losses)
    assert history["epoch"] == [1, 2] and history["step"] == [3, 6]
    assert set(history) >= {"train/loss", "elapsed_s", "val/loss", "val/mss", "val/theta_l1", AM, FM}
    assert all(len(values) == 2 for values in history.values())
    assert history["train/loss"][0] == pytest.approx(sum(result.step_losses[:3]) / 3)
    assert all(0 <= e <= 1000 for e in history["val/theta_l1"])
    assert history["val/theta_l1"][-1] == pytest.approx((history[AM][-1] + history[FM][-1]) / 2, rel=1e-5)
    assert history["elapsed_s"] == sorted(history["elapsed_s"])
    assert rows == [{key: values[i] for key, values in history.items()} for i in range(2)]
    assert result.checkpoint is None and result.log_dir is None


def test_max_steps_and_no_true_theta():
    audio, _ = dataset(8, seed=3)
    result = train_predictor(TinyEncoder(), chirplet_synth(), "mss", audio, audio[:4], epochs=10, max_steps=3,
                             batch_size=4, **quiet())
    assert result.steps == 3 and result.epochs == 2 and result.stopped_early
    assert not any(key.startswith("val/theta_l1") for key in result.history)  # no true thetas: no theta metrics
    first, second = result.history["val/loss"]
    assert math.isfinite(first) and second is None  # the second epoch stopped before its validation
    assert result.last("val/loss") == first and result.last("val/theta_l1") is None


def test_seeded_runs_repeat_and_the_training_order_is_reshuffled():
    train = dataset(8, seed=4)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)  # the encoder's initial weights are the caller's
        runs.append(train_predictor(TinyEncoder(), chirplet_synth(), "mss", train, epochs=2, batch_size=2, seed=5,
                                    **quiet()))
    assert runs[0].step_losses == runs[1].step_losses
    assert runs[0].history["train/loss"] == runs[1].history["train/loss"]
    data = TensorDataModule(train, batch_size=2, seed=5)
    loader = data.train_dataloader()
    orders = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        orders.append(torch.cat([batch["index"] for batch in loader]).tolist())
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(8)) and orders[0] != orders[1]


def test_checkpoint_resumes_like_one_run(tmp_path):
    train, val = dataset(8, seed=6), dataset(4, seed=7)
    settings = dict(batch_size=4, lr=0.05, val_metrics=(), **quiet())
    torch.manual_seed(0)
    straight = train_predictor(TinyEncoder(), chirplet_synth(), "mss", train, val, epochs=2, **settings)
    torch.manual_seed(0)
    first = train_predictor(TinyEncoder(), chirplet_synth(), "mss", train, val, epochs=1, root_dir=str(tmp_path),
                            **settings)
    assert os.path.isfile(first.checkpoint) and os.path.isfile(os.path.join(first.log_dir, "metrics.csv"))
    resumed = train_predictor(TinyEncoder(), chirplet_synth(), "mss", train, val, epochs=2, root_dir=str(tmp_path),
                              ckpt_path=first.checkpoint, **settings)
    assert resumed.steps == straight.steps == 4 and resumed.history["epoch"] == [2]
    assert first.step_losses + resumed.step_losses == straight.step_losses
    for a, b in zip(resumed.encoder.parameters(), straight.encoder.parameters()):
        assert torch.equal(a, b)


def test_scrapl_with_theta_is_warmup():
    train = dataset(4, seed=8)
    loss = SCRAPLLoss(**SCRAPL_TINY)
    result = train_predictor(TinyEncoder(), chirplet_synth(), loss, train, epochs=1, batch_size=4, theta_is=1,
                             theta_is_iter=1, **quiet())
    assert result.steps == 1 and loss.step_count == 1
    assert not torch.allclose(loss.probs, torch.full_like(loss.probs, 1 / len(loss.probs)))  # theta-IS moved them
    assert loss.attached_params == []


class Flat(nn.Module):
    """A linear layer on the first channel: a wrong output width when ``out`` is not 2."""

    def __init__(self, out):
        super().__init__()
        self.inner = nn.Linear(N, out)

    def forward(self, audio):
        return self.inner(audio[:, 0])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(encoder=lambda audio: audio), TypeError, "nn.Module"),
    (dict(encoder=nn.Identity()), ValueError, "no trainable parameters"),
    (dict(encoder=Flat(3)), ValueError, r"theta of shape \(batch, 2\)"),
    (dict(synth=None), TypeError, "synth must be"),
    (dict(train_data="audio.wav"), TypeError, "train_data must be"),
    (dict(train_data=[torch.zeros(4, 1, N)]), TypeError, "train_data must be"),
    (dict(train_data=(torch.zeros(4, 1, N), torch.zeros(3, 2))), ValueError, r"theta must have shape \(4, 2\)"),
    (dict(train_data=(torch.zeros(4, 1, N), torch.zeros(4, 3))), ValueError, r"theta must have shape \(4, 2\)"),
    (dict(train_data=torch.zeros(4, N)), ValueError, "batch, channels, samples"),
    (dict(train_data=torch.full((4, 1, N), math.nan)), ValueError, "NaN"),
    (dict(train_data=torch.zeros(4, 1, N // 2)), ValueError, "renders 2048 samples"),
    (dict(val_data=torch.zeros(2, 2, N)), ValueError, "must match"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(max_steps=0), ValueError, "max_steps"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(lr=0), ValueError, "lr"),
    (dict(loss="unknown"), ValueError, "unknown loss"),
    (dict(theta_is=4), ValueError, "theta-IS warmup"),
    (dict(callbacks=[lambda info: None]), TypeError, "Callback"),
    (dict(trainer_kwargs={"max_epochs": 3}), ValueError, "max_epochs"),
    (dict(epochs=1.5), TypeError, "epochs must be an int"),
    (dict(loss=lambda x_hat, x: (x_hat - x).sum() * math.nan), FloatingPointError, "nan"),
])
def test_rejects_bad_input(kwargs, error, match):
    args = dict(encoder=TinyEncoder(), synth=chirplet_synth(), loss="mss", train_data=torch.zeros(4, 1, N),
                val_data=None, epochs=1, **quiet())
    args.update(kwargs)
    with pytest.raises(error, match=match):
        train_predictor(**args)


def test_data_module_splits_keep_their_own_columns():
    audio, theta = dataset(6, seed=9)
    data = TensorDataModule(audio[:4], (audio[4:], theta[4:]), batch_size=4)
    train, val = next(iter(data.train_dataloader())), next(iter(data.val_dataloader()))
    assert set(train) == {"audio", "index"} and set(val) == {"audio", "theta", "index"}
    assert torch.equal(val["audio"], audio[4:]) and torch.equal(val["theta"], theta[4:])
    assert data.state_dict()["num_examples"] == 4
    with pytest.raises(ValueError, match="no test data"):
        data.test_dataloader()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda():
    train, val = dataset(4, seed=10), dataset(2, seed=11)
    result = train_predictor(TinyEncoder(), chirplet_synth(), SCRAPLLoss(**SCRAPL_TINY), train, val, epochs=1,
                             batch_size=2, progress=False, accelerator="gpu")
    assert result.steps == 2 and math.isfinite(result.history["val/theta_l1"][0])
