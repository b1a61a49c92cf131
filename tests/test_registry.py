"""The loss registry: every loss builds by name or config and drops into the same training loop."""
import pytest
import torch

from scrapl_graph import JTFSLoss, SCRAPLLoss
from scrapl_graph.losses import LOSSES, build_loss
from _configs import JTFS_2048

N = 2048
SMALL_JTFS = JTFS_2048
KWARGS = {
    "scrapl": dict(SMALL_JTFS, use_p_adam=False, use_p_saga=False),
    "jtfs": SMALL_JTFS,
    "stft": dict(fft_size=256, hop_size=64, win_length=256),
}
# Losses that learn an additive waveform error on mono input (the others: test_stereo_and_random_losses_run;
# mss_random needs signals longer than 32767 samples and p_loss compares parameters: tests/test_mss_losses.py;
# loss_sum needs its terms: tests/test_loss_sum.py).
TRAINABLE = sorted(set(LOSSES) - {"random_resolution_stft", "sum_and_difference_stft", "dc", "mss_random", "p_loss",
                                  "loss_sum"})


def train(loss_fn, steps=40):
    """Adam on an additive waveform error: returns the JTFS distance before and after."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(N) / 8192
    target = (torch.sin(2 * torch.pi * 440 * t) * torch.exp(-3 * t)).expand(2, 1, N).contiguous()
    error = torch.nn.Parameter(0.3 * torch.randn(2, 1, N, generator=g))
    opt = torch.optim.Adam([error], lr=1e-2)
    judge = JTFSLoss(**SMALL_JTFS)
    with torch.no_grad():
        before = judge(target + error, target)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(target + error, target)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return before, judge(target + error, target)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINABLE)
def test_each_loss_trains_in_the_same_loop(name):
    loss_fn = build_loss(name, **KWARGS.get(name, {}))
    before, after = train(loss_fn)
    assert after < before


@pytest.mark.parametrize("name", TRAINABLE)
def test_each_loss_takes_a_step_in_the_same_loop(name):
    """One step of the loop above: a finite scalar whose gradient moves the waveform (40 steps: slow test)."""
    before, after = train(build_loss(name, **KWARGS.get(name, {})), steps=1)
    assert torch.isfinite(after) and after != before


def test_stereo_and_random_losses_run():
    # These need stereo input, or are stochastic / blind to the waveform error: one step each.
    x = torch.randn(2, 2, N, requires_grad=True)
    kwargs = {"random_resolution_stft": dict(min_fft_size=64, max_fft_size=1024),
              "sum_and_difference_stft": dict(fft_sizes=[256, 512], hop_sizes=[64, 128], win_lengths=[256, 512])}
    for name in ("random_resolution_stft", "sum_and_difference_stft", "dc"):
        loss = build_loss(name, **kwargs.get(name, {}))(x, torch.randn(2, 2, N))
        loss.backward()
        assert torch.isfinite(loss)


def test_config_forms():
    loss = build_loss({"class_path": "auraloss.freq.STFTLoss", "init_args": {"fft_size": 512}})
    assert type(loss).__name__ == "STFTLoss" and loss.fft_size == 512
    loss = build_loss({"class_path": "scrapl_graph.SCRAPLLoss", "init_args": dict(KWARGS["scrapl"])})
    assert isinstance(loss, SCRAPLLoss) and loss.n_paths > 0
    loss = build_loss({"class_path": "jtfs", "init_args": SMALL_JTFS})
    assert isinstance(loss, JTFSLoss)
    mss = build_loss("mss")
    assert list(mss.fft_sizes) == [64, 128, 256, 512, 1024, 2048]
    assert isinstance(build_loss("MRSTFT"), type(build_loss("multi_resolution_stft")))


@pytest.mark.parametrize(
    "spec, error, match",
    [
        ("nope", ValueError, "unknown loss 'nope'"),
        ({"class_path": "auraloss.freq.NoSuchLoss"}, ValueError, "no attribute"),
        ({"class_path": "no_such_module.Loss"}, ValueError, "cannot import"),
        ({"class_path": "torch.Tensor"}, TypeError, "not a subclass of torch.nn.Module"),
        ({"init_args": {}}, ValueError, "class_path"),
        ({"class_path": "stft", "extra": 1}, ValueError, "class_path"),
        (3, TypeError, "name or a mapping"),
    ],
)
def test_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        build_loss(spec)
