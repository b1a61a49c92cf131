"""The constant-Q front end against analytic values, and the paper's CNN encoders (sizes, shapes, rules)."""
import math
import pathlib
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from scrapl_graph.encoders import (AudioEncoder, ConstantQTransform, SpectralCNNEncoder, ThetaHeads,
                                   as_n_theta, cqt_frequencies, paper_f_min)

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "scrapl_graph"
SR, N = 8192, 8192


def tone(freq, n=N, sr=SR, amplitude=1.0, phase=0.3):
    t = torch.arange(n, dtype=torch.get_default_dtype()) / sr
    return (amplitude * torch.cos(2 * math.pi * freq * t + phase)).reshape(1, 1, n)


@pytest.fixture(scope="module")
def cqt():
    return ConstantQTransform(SR, N, log_eps=None)


# ------------------------------------------------------------------ CQT
@pytest.mark.parametrize("n, hop, octaves, bins", [(8192, 256, 5, 12), (5000, 100, 4, 8), (4097, 64, 3, 24)])
def test_output_shape_formula(n, hop, octaves, bins):
    cqt = ConstantQTransform(SR, n, n_octaves=octaves, bins_per_octave=bins, hop_length=hop)
    out = cqt(torch.randn(2, 3, n))
    assert cqt.out_shape == (octaves * bins, n // hop + 1)
    assert out.shape == (2, 3, octaves * bins, n // hop + 1)


def test_paper_front_ends_give_the_reference_image_sizes():
    granular = ConstantQTransform(8192, 32768, n_octaves=5)
    drums = ConstantQTransform(44100, 44100, n_octaves=9)
    assert granular.out_shape == (60, 129) and drums.out_shape == (108, 173)
    assert granular.f_min == pytest.approx(102.4) and drums.f_min == pytest.approx(44100 * 0.4 / 512)
    assert granular.frequencies[-1] < 0.4 * 8192 and drums.frequencies[-1] < 0.4 * 44100
    assert paper_f_min(8192, 5) == pytest.approx(102.4)


@pytest.mark.parametrize("k", [3, 30, 57])
def test_a_tone_at_a_centre_frequency_peaks_there_with_the_analytic_amplitude(cqt, k):
    f_k = cqt.frequencies[k]
    mag = cqt(tone(f_k, amplitude=0.8))[0, 0, :, 4:-4].mean(dim=-1)
    assert int(mag.argmax()) == k
    # cos of amplitude A -> A / 2 times the gain sqrt(Q sr / f_k)
    assert float(mag[k]) == pytest.approx(0.4 * math.sqrt(cqt.Q * SR / f_k), rel=1e-4)
    # neighbours cross at half amplitude of their own response (times their own gain)
    ratio_below = 0.5 * 2 ** (1 / 24)
    ratio_above = 0.5 ** (2 ** (-1 / 6)) * 2 ** (-1 / 24)
    assert float(mag[k - 1] / mag[k]) == pytest.approx(ratio_below, rel=1e-3)
    assert float(mag[k + 1] / mag[k]) == pytest.approx(ratio_above, rel=1e-3)


def test_unit_gain_gives_half_the_amplitude_of_a_cosine():
    cqt = ConstantQTransform(SR, N, gain="unit", log_eps=None)
    mag = cqt(tone(cqt.frequencies[20], amplitude=2.0))[0, 0, 20, 4:-4]
    torch.testing.assert_close(mag, torch.ones_like(mag), rtol=1e-4, atol=0)


def test_a_stationary_tone_has_a_time_invariant_magnitude(cqt):
    mag = cqt(tone(cqt.frequencies[40]))[0, 0, 40]
    interior = mag[cqt.pad // cqt.hop_length: -(cqt.pad // cqt.hop_length)]
    assert float(interior.std() / interior.mean()) < 1e-4
    # the reflected signal's phase jump lowers only the frames within reach of the edges, by a few percent
    assert float((mag / interior.mean() - 1).abs().max()) < 0.1


def test_peaks_of_tones_an_octave_apart_are_an_octave_of_bins_apart(cqt):
    for k in (5, 17, 29):
        peaks = [int(cqt(tone(cqt.frequencies[k] * 2 ** o))[0, 0, :, 5:-5].mean(-1).argmax()) for o in (0, 1, 2)]
        assert peaks == [k, k + 12, k + 24]


def test_log_output_is_log1p_of_the_magnitude_over_eps(cqt):
    x = torch.randn(2, 1, N)
    logged = ConstantQTransform(SR, N, log_eps=1e-3)(x)
    torch.testing.assert_close(logged, torch.log1p(cqt(x) / 1e-3))
    assert cqt_frequencies(100.0, 13, 12)[-1] == pytest.approx(200.0)


def test_filters_are_non_persistent_buffers_that_follow_to():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cqt = ConstantQTransform(SR, N)
    finally:
        torch.set_default_dtype(previous)
    assert cqt.dtype == torch.float64 and cqt.state_dict() == {}
    assert cqt(torch.randn(1, 1, N, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(TypeError, match="convert the module"):
        cqt(torch.randn(1, 1, N))
    cqt.to(torch.float32)
    assert cqt.dtype == torch.float32 and cqt(torch.randn(1, 1, N)).dtype == torch.float32
    cqt.to("meta")
    assert all(b.device.type == "meta" for b in cqt.buffers())
    with pytest.raises(ValueError, match="move the module"):
        cqt(torch.randn(1, 1, N))


def test_the_transform_is_differentiable(cqt):
    x = torch.randn(1, 1, N, requires_grad=True)
    cqt(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("x, error", [
    (torch.randn(1, N), ValueError),                     # wrong ndim
    (torch.randn(1, 1, N - 1), ValueError),              # length mismatch
    (torch.randn(0, 1, N), ValueError),                  # empty batch
    (torch.ones(1, 1, N, dtype=torch.int64), TypeError),  # integer dtype
    (torch.randn(1, 1, N, dtype=torch.complex64), TypeError),
    (torch.full((1, 1, N), float("nan")), ValueError),
    ("audio", TypeError),
])
def test_cqt_refuses_bad_input_with_our_errors(cqt, x, error):
    with pytest.raises(error) as info:
        cqt(x)
    assert info.traceback[-1].path.is_relative_to(PACKAGE)


@pytest.mark.parametrize("kwargs, error", [
    (dict(bins_per_octave=0), ValueError),
    (dict(f_min=2000.0), ValueError),                # top bin above Nyquist
    (dict(hop_length=0), ValueError),
    (dict(n_octaves=2.5), TypeError),
    (dict(gain="peak"), ValueError),
    (dict(pad_mode="circular"), ValueError),
    (dict(log_eps=0.0), ValueError),
    (dict(dtype=torch.int32), TypeError),
])
def test_cqt_refuses_bad_settings(kwargs, error):
    with pytest.raises(error):
        ConstantQTransform(SR, N, **{"n_octaves": 5, **kwargs})


def test_reflect_padding_longer_than_the_signal_is_refused_and_zeros_work():
    with pytest.raises(ValueError, match="pad_mode='constant'"):
        ConstantQTransform(SR, 1024, n_octaves=5)
    out = ConstantQTransform(SR, 1024, n_octaves=5, pad_mode="constant")(torch.randn(1, 1, 1024))
    assert out.shape == (1, 1, 60, 5) and torch.isfinite(out).all()


# ------------------------------------------------------------------ CNN
def test_parameter_counts_match_the_paper():
    granular = SpectralCNNEncoder.paper_granular_chirplet()
    drums = SpectralCNNEncoder.paper_tr808()
    counts = [sum(p.numel() for p in m.parameters()) for m in (granular, drums)]
    assert counts == [604_106, 724_642]  # the paper: 604K and 724K
    assert [c // 1000 for c in counts] == [604, 724]
    assert sum(p.numel() for p in AudioEncoder.paper_granular_chirplet(n_samples=7936).parameters()) == 604_106


def test_block_layer_order_is_norm_conv_pool_prelu():
    enc = SpectralCNNEncoder.paper_tr808()
    for block in enc.blocks:
        assert [type(m) for m in block] == [nn.LayerNorm, nn.Conv2d, nn.MaxPool2d, nn.PReLU]
        assert block[0].elementwise_affine is False and block[2].kernel_size in ((2, 2), (2, 3), (3, 3))
    assert enc.block_shapes[-1] == (1, 1)
    assert [type(m) for m in enc.embed] == [nn.Linear, nn.PReLU, nn.Dropout]


def test_paper_configurations_map_audio_to_theta():
    granular = AudioEncoder.paper_granular_chirplet(n_samples=7936).eval()  # shortest signal the pooling allows
    assert granular.cnn.in_shape == (60, 32) and granular(torch.randn(3, 1, 7936)).shape == (3, 2)
    drums = AudioEncoder.paper_tr808().eval()  # the paper's size: one forward, well under a second
    assert drums.cnn.in_shape == (108, 173) and drums(torch.randn(1, 1, 44100)).shape == (1, 14)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    enc = AudioEncoder.paper_granular_chirplet(n_theta=3, n_samples=7936).train()
    enc(torch.randn(4, 1, 7936)).pow(2).sum().backward()
    missing = [name for name, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_eval_is_deterministic_and_train_uses_dropout():
    enc = SpectralCNNEncoder.paper_granular_chirplet(in_shape=(60, 32))
    x = torch.randn(2, 1, 60, 32)
    enc.eval()
    torch.testing.assert_close(enc(x), enc(x), rtol=0, atol=0)
    enc.train()
    assert not torch.equal(enc(x), enc(x))


def test_heads_equal_separate_linear_prelu_linear_stacks():
    heads = ThetaHeads(8, 4, 3, dropout=0.0)
    z = torch.randn(5, 8)
    columns = []
    for i in range(3):
        first, act, last = nn.Linear(8, 4), nn.PReLU(), nn.Linear(4, 1)
        with torch.no_grad():
            first.weight.copy_(heads.w1[i].T), first.bias.copy_(heads.b1[i]), act.weight.fill_(heads.slope[i])
            last.weight.copy_(heads.w2[i][None]), last.bias.copy_(heads.b2[i][None])
        columns.append(last(act(first(z))))
    torch.testing.assert_close(heads(z), torch.cat(columns, dim=1))
    assert heads.w1.abs().max() <= 8 ** -0.5 and heads.w2.abs().max() <= 4 ** -0.5


def test_output_size_comes_from_an_int_or_a_graph():
    from scrapl_graph.graph import GraphSynth
    from scrapl_graph.processors import ChirpletSynth

    graph = GraphSynth.chain({"chirplet": ChirpletSynth(sample_rate=8192, num_samples=1024, f0_hz=512,
                                                       max_shift=0)}, num_samples=1024)
    enc = SpectralCNNEncoder((16, 16), graph, channels=(4, 4), embedding_dim=8)
    assert enc.n_theta == graph.n_theta == as_n_theta(graph.layout)
    assert as_n_theta(SimpleNamespace(n_theta=5)) == 5
    for bad, error in ((0, ValueError), (True, TypeError), ("2", TypeError), (object(), TypeError)):
        with pytest.raises(error):
            as_n_theta(bad)


def test_sigmoid_output_is_the_references_bounded_parameter():
    enc = SpectralCNNEncoder((16, 16), 4, channels=(4, 4), embedding_dim=8, output_sigmoid=True).eval()
    out = enc(torch.randn(3, 1, 16, 16))
    assert out.shape == (3, 4) and ((out > 0) & (out < 1)).all()


def test_float64_default_dtype_builds_a_float64_encoder():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        enc = AudioEncoder.paper_granular_chirplet(n_samples=7936, channels=(8,) * 5)
    finally:
        torch.set_default_dtype(previous)
    assert all(p.dtype == torch.float64 for p in enc.parameters()) and enc.frontend.dtype == torch.float64
    assert enc.eval()(torch.randn(2, 1, 7936, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(TypeError):
        enc(torch.randn(2, 1, 7936))


@pytest.mark.parametrize("x, error", [
    (torch.randn(1, 16, 16), ValueError),               # wrong ndim
    (torch.randn(1, 1, 16, 15), ValueError),            # another image size
    (torch.randn(1, 2, 16, 16), ValueError),            # another channel count
    (torch.randn(0, 1, 16, 16), ValueError),
    (torch.ones(1, 1, 16, 16, dtype=torch.int64), TypeError),
    (torch.randn(1, 1, 16, 16, dtype=torch.float64), TypeError),
    (torch.full((1, 1, 16, 16), float("inf")), ValueError),
])
def test_cnn_refuses_bad_input_with_our_errors(x, error):
    enc = SpectralCNNEncoder((16, 16), 2, channels=(4, 4), embedding_dim=8)
    with pytest.raises(error) as info:
        enc(x)
    assert info.traceback[-1].path.is_relative_to(PACKAGE)


@pytest.mark.parametrize("kwargs", [
    dict(pool_sizes=((2, 2),)),                 # one pooling for two blocks
    dict(pool_sizes=((4, 4), (8, 8))),          # pools the image away
    dict(dropout=1.0),
    dict(channels=()),
    dict(embedding_dim=1),                      # no room for the heads' hidden layer
    dict(kernel_size=(3, 0)),
])
def test_cnn_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        SpectralCNNEncoder((16, 16), 2, **{"channels": (4, 4), "embedding_dim": 8, **kwargs})


def test_front_end_and_cnn_shapes_must_agree():
    with pytest.raises(ValueError, match="in_shape=frontend.out_shape"):
        AudioEncoder(ConstantQTransform(SR, N), SpectralCNNEncoder((60, 32), 2))
