"""The paper's MSS baselines (linear, log + linear, random, revisited) and the supervised P-loss."""
import math

import numpy as np
import pytest
import torch

from scrapl_graph.losses import ParameterLoss, RevisitedMSSLoss, build_loss
from scrapl_graph.losses.mss import PAPER_FFT_SIZES, mss_linear, mss_log_linear, mss_random
from scrapl_graph.train.metrics import normalized_param_error

N = 4096
REVISITED_WINDOWS = [67, 127, 257, 509, 1021, 2053]
REVISITED_HOPS = [33, 63, 128, 254, 510, 1026]


def signals(channels=1, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 8192
    x = torch.sin(2 * math.pi * 440 * t) * torch.exp(-3 * t) + 0.05 * torch.randn(n, generator=g)
    x_hat = 0.5 * torch.randn(2, channels, n, generator=g)
    return x_hat, x.expand(2, channels, n).contiguous()


def builders():
    return {"mss_linear": mss_linear(), "mss_log_linear": mss_log_linear(),
            "mss_random": mss_random(max_fft_size=N - 1), "mss_revisited": RevisitedMSSLoss()}


@pytest.mark.parametrize("name", ["mss_linear", "mss_log_linear", "mss_random", "mss_revisited"])
def test_each_variant_is_finite_differentiable_and_zero_at_the_target(name):
    loss = builders()[name]
    x_hat, x = signals()
    x_hat.requires_grad_(True)
    value = loss(x_hat, x)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and value > 0
    assert torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0
    same = x.clone().requires_grad_(True)
    at_target = loss(same, x)
    at_target.backward()
    assert at_target.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(same.grad).all()


@pytest.mark.parametrize("name", ["mss_linear", "mss_log_linear", "mss_revisited"])
def test_symmetric_variants(name):
    # Entrywise distances of magnitudes do not care which signal is the target (spectral convergence, in
    # the random variant, does: it divides by the target's norm).
    loss = builders()[name]
    x_hat, x = signals()
    torch.testing.assert_close(loss(x_hat, x), loss(x, x_hat))


def test_linear_and_log_linear_use_the_paper_settings():
    for loss, w_log in ((mss_linear(), 0.0), (mss_log_linear(), 1.0)):
        stfts = loss.stft_losses
        assert [s.fft_size for s in stfts] == list(PAPER_FFT_SIZES) == [64, 128, 256, 512, 1024, 2048]
        assert [s.hop_size for s in stfts] == [16, 32, 64, 128, 256, 512]
        assert [s.win_length for s in stfts] == list(PAPER_FFT_SIZES)
        for s in stfts:
            assert (s.w_sc, s.w_phs, s.w_lin_mag, s.w_log_mag, s.mag_distance) == (0.0, 0.0, 1.0, w_log, "L1")
    assert mss_linear(fft_sizes=[256], hop_sizes=[64], win_lengths=[256]).stft_losses[0].fft_size == 256


def test_log_linear_is_linear_plus_the_log_term():
    x_hat, x = signals()
    log_only = mss_linear(w_lin_mag=0.0, w_log_mag=1.0)
    torch.testing.assert_close(mss_log_linear()(x_hat, x), mss_linear()(x_hat, x) + log_only(x_hat, x))


def test_random_draws_the_paper_range():
    loss = mss_random()
    assert loss.max_fft_size == 32767 and loss.resolutions == 3
    np.random.seed(0)
    sizes = set()
    for _ in range(100):
        loss.randomize_losses()
        sizes |= {s.fft_size for s in loss.stft_losses}
    assert sizes == {2**k for k in range(4, 14)}  # 16 .. 8192: log2(32767) < 15
    with pytest.raises(ValueError, match="larger than largest FFT size"):
        loss(*signals())


def test_revisited_defaults_are_the_paper_settings():
    loss = RevisitedMSSLoss()
    assert loss.win_lengths == loss.fft_sizes == REVISITED_WINDOWS
    assert loss.hop_sizes == REVISITED_HOPS
    assert (loss.gamma, loss.p) == (1.0, 2.0)
    window = loss.window_0
    assert window.shape == (67,) and window.max().item() == pytest.approx(1.0, abs=1e-2)  # flat top
    assert window.min().item() < 0  # a flat-top window dips below zero, unlike Hann


def manual_revisited(x_hat, x, win, hop, gamma=1.0, p=2.0):
    """The revisited loss for mono signals and one resolution, with frames cut by hand."""
    from scipy.signal.windows import flattop

    window = torch.as_tensor(flattop(win, sym=False), dtype=x.dtype)

    def compressed(sig):
        padded = torch.nn.functional.pad(sig[:, None], (win // 2, win // 2), mode="reflect")[:, 0]
        frames = padded.unfold(-1, win, hop) * window
        return torch.log1p(gamma * torch.fft.rfft(frames).abs())

    diff = compressed(x_hat[:, 0]) - compressed(x[:, 0])
    return diff.abs().pow(p).sum(dim=(-2, -1)).pow(1 / p).mean()


@pytest.mark.parametrize("win, gamma, p", [(67, 1.0, 2.0), (127, 10.0, 1.0)])
def test_revisited_matches_frames_cut_by_hand(win, gamma, p):
    x_hat, x = signals(n=1024)
    x_hat, x = x_hat.double(), x.double()
    loss = RevisitedMSSLoss(win_lengths=[win], gamma=gamma, p=p)
    torch.testing.assert_close(loss(x_hat, x), manual_revisited(x_hat, x, win, win // 2, gamma, p))


def test_revisited_sums_resolutions_and_averages_channels():
    x_hat, x = signals(channels=2)
    two = RevisitedMSSLoss(win_lengths=[67, 127])
    singles = RevisitedMSSLoss(win_lengths=[67])(x_hat, x) + RevisitedMSSLoss(win_lengths=[127])(x_hat, x)
    torch.testing.assert_close(two(x_hat, x), singles)
    per_channel = torch.stack([two(x_hat[:, c : c + 1], x[:, c : c + 1]) for c in range(2)])
    torch.testing.assert_close(two(x_hat, x), per_channel.mean())


def test_revisited_gradcheck_and_dtype():
    g = torch.Generator().manual_seed(1)
    loss = RevisitedMSSLoss(win_lengths=[7, 13])
    x_hat = torch.randn(1, 1, 48, dtype=torch.float64, generator=g, requires_grad=True)
    x = torch.randn(1, 1, 48, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda a: loss(a, x), (x_hat,))
    assert loss(x_hat, x).dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(win_lengths=[]), "one window length"), (dict(win_lengths=[67], hop_sizes=[1, 2]), "one window length"),
     (dict(win_lengths=[67], fft_sizes=[64]), "at least its window"), (dict(gamma=0.0), "gamma"),
     (dict(p=0.5), "p at least 1")],
)
def test_revisited_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RevisitedMSSLoss(**kwargs)


def test_revisited_rejects_bad_input():
    loss = RevisitedMSSLoss()
    x_hat, x = signals()
    with pytest.raises(ValueError, match="samples, need at least 1027"):
        loss(x_hat[..., :1000], x[..., :1000])
    with pytest.raises(ValueError, match="same shape"):
        loss(x_hat, x[:1])
    with pytest.raises(TypeError, match="floating-point"):
        loss(x_hat.long(), x.long())
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full_like(x, float("nan")), x)


@pytest.mark.parametrize("name, cls", [
    ("mss_linear", "MultiResolutionSTFTLoss"), ("mss_log_linear", "MultiResolutionSTFTLoss"),
    ("mss_random", "RandomResolutionSTFTLoss"), ("mss_revisited", "RevisitedMSSLoss"),
    ("p_loss", "ParameterLoss"), ("parameter", "ParameterLoss")])
def test_registry_builds_them(name, cls):
    loss = build_loss(name)
    assert type(loss).__name__ == cls
    assert getattr(loss, "compares", "audio") == ("theta" if cls == "ParameterLoss" else "audio")
    assert build_loss("mss_revisited", p=1.0).p == 1.0
    assert build_loss({"class_path": "mss_linear", "init_args": {"w_log_mag": 2.0}}).stft_losses[0].w_log_mag == 2.0


# P-loss

def test_p_loss_analytic_values():
    theta_hat = torch.zeros(2, 2)  # sigmoid: 0.5 everywhere
    theta = torch.tensor([[math.log(3.0), 0.0], [-math.log(3.0), 0.0]])  # sigmoid: 0.75 / 0.25, 0.5
    assert ParameterLoss()(theta_hat, theta).item() == pytest.approx(0.0625)  # (0.25^2 + 0.25^2) / 2 + 0
    assert ParameterLoss(reduction="mean")(theta_hat, theta).item() == pytest.approx(0.03125)
    assert ParameterLoss(distance="l1")(theta_hat, theta).item() == pytest.approx(0.25)
    assert ParameterLoss(normalize=False)(theta_hat, theta).item() == pytest.approx(math.log(3.0) ** 2)
    assert ParameterLoss()(theta, theta).item() == 0.0


def test_p_loss_l1_mean_is_the_parameter_error():
    g = torch.Generator().manual_seed(0)
    theta_hat, theta = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    value = ParameterLoss(distance="l1", reduction="mean")(theta_hat, theta)
    torch.testing.assert_close(value, normalized_param_error(theta_hat, theta))


@pytest.mark.parametrize("distance, normalize", [("mse", True), ("l1", True), ("mse", False)])
def test_p_loss_gradcheck(distance, normalize):
    g = torch.Generator().manual_seed(2)
    theta_hat = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    theta = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    loss = ParameterLoss(distance=distance, normalize=normalize)
    assert torch.autograd.gradcheck(loss, (theta_hat, theta))
    assert loss(theta_hat, theta).dtype == torch.float64


@pytest.mark.parametrize(
    "theta_hat, theta, error, match",
    [([[0.0]], torch.zeros(1, 1), TypeError, "torch.Tensor"),
     (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), TypeError, "floating-point"),
     (torch.zeros(2, 3, dtype=torch.complex64), torch.zeros(2, 3), TypeError, "floating-point"),
     (torch.zeros(3), torch.zeros(3), ValueError, r"\(batch, n_theta\)"),
     (torch.zeros(0, 3), torch.zeros(0, 3), ValueError, "non-empty"),
     (torch.zeros(2, 3), torch.zeros(2, 4), ValueError, "differ"),
     (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64), ValueError, "share dtype"),
     (torch.full((2, 3), float("nan")), torch.zeros(2, 3), ValueError, "NaN"),
     (torch.zeros(2, 3), torch.full((2, 3), float("inf")), ValueError, "theta_true contains NaN or Inf")],
)
def test_p_loss_rejects_bad_input(theta_hat, theta, error, match):
    with pytest.raises(error, match=match):
        ParameterLoss()(theta_hat, theta)


def test_p_loss_rejects_bad_settings():
    with pytest.raises(ValueError, match="distance"):
        ParameterLoss(distance="huber")
    with pytest.raises(ValueError, match="reduction"):
        ParameterLoss(reduction="none")
    assert ParameterLoss.compares == "theta"
