"""Synths and effects: GRAFX protocol, gradients, randomness, physics, errors."""
import logging
import math
import warnings

import numpy as np
import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from grafx.data import GRAFX, NodeConfigs
    from grafx.data.conversion import convert_to_tensor
    from grafx.processors import ZeroPhaseFIREqualizer
    from grafx.render import prepare_render, render_grafx, reorder_for_fast_render
    from grafx.utils import create_empty_parameters

from scrapl_graph.processors import (
    CHIRPLET_PRESETS,
    DRUM_PRESETS,
    ChirpletSynth,
    DrumSynth,
    GranularChirpSynth,
    ParamRange,
    TimeShift,
)

# Small configurations keep the tests fast; the physics tests use the paper's.
SYNTHS = {
    "chirplet": lambda **kw: ChirpletSynth(sample_rate=2048, num_samples=1024, f0_hz=256, max_shift=64, **kw),
    "granular": lambda **kw: GranularChirpSynth(sample_rate=2048, num_samples=1024, num_grains=8,
                                                grain_samples=128, f0_range_hz=(64, 512), **kw),
    "drum": lambda **kw: DrumSynth(sample_rate=8000, num_samples=1024, **kw),
}


def random_params(proc, nodes, dtype=torch.float32, requires_grad=False):
    gen = torch.Generator().manual_seed(1234)
    return {
        name: torch.randn(nodes, *shape, generator=gen, dtype=dtype).requires_grad_(requires_grad)
        for name, shape in proc.parameter_size().items()
    }


def analytic(x):
    """Analytic signal of a real 1-D numpy array (FFT Hilbert transform)."""
    n = len(x)
    spec = np.fft.fft(x)
    h = np.zeros(n)
    h[0] = 1
    h[1:(n + 1) // 2] = 2
    if n % 2 == 0:
        h[n // 2] = 1
    return np.fft.ifft(spec * h)


# ---------------------------------------------------------------- protocol


@pytest.mark.parametrize("kind", SYNTHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_synth_output_shape_dtype_device(kind, dtype):
    proc = SYNTHS[kind](seed=0)
    params = random_params(proc, 3, dtype)
    x = torch.zeros(3, 2, proc.num_samples, dtype=dtype)
    y = proc(x, **params)
    assert y.shape == (3, 2, proc.num_samples)
    assert y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()
    assert y.abs().amax(dim=-1).min() > 0  # every node makes sound
    # The mono synth is copied to both channels.
    torch.testing.assert_close(y[:, 0], y[:, 1])
    # Without input: one channel.
    assert proc(None, **params).shape == (3, 1, proc.num_samples)


@pytest.mark.parametrize("kind", SYNTHS)
def test_synth_input_modes(kind):
    params = random_params(SYNTHS[kind](), 2)
    x = torch.randn(2, 1, SYNTHS[kind]().num_samples)
    alone = SYNTHS[kind](seed=3)(None, **params)
    added = SYNTHS[kind](seed=3, input_mode="add")(x, **params)
    ignored = SYNTHS[kind](seed=3, input_mode="ignore")(x, **params)
    torch.testing.assert_close(added, alone + x)
    torch.testing.assert_close(ignored, alone)


@pytest.mark.parametrize("kind", SYNTHS)
def test_synth_gradients_finite_for_every_parameter(kind):
    proc = SYNTHS[kind](seed=0)
    params = random_params(proc, 3, torch.float64, requires_grad=True)
    y = proc(None, **params)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    for name, value in params.items():
        assert value.grad is not None, name
        assert torch.isfinite(value.grad).all(), name
        assert value.grad.abs().sum() > 0, f"{name} has no effect on the output"


@pytest.mark.parametrize("kind", SYNTHS)
def test_synth_gradcheck(kind):
    # deterministic: every evaluation of gradcheck sees the same random draw.
    proc = SYNTHS[kind](seed=5, deterministic=True)
    params = random_params(proc, 2, torch.float64, requires_grad=True)
    names = list(params)
    fn = lambda *values: proc(None, **dict(zip(names, values)))
    assert torch.autograd.gradcheck(fn, tuple(params.values()), eps=1e-6, atol=1e-4, rtol=1e-3, fast_mode=True)


@pytest.mark.parametrize("kind", list(SYNTHS) + ["shift"])
def test_parameter_size_matches_create_empty_parameters(kind):
    proc = TimeShift(8) if kind == "shift" else SYNTHS[kind]()
    graph = GRAFX(config=NodeConfigs([kind]))
    inp = graph.add("in")
    first = graph.add(kind)
    second = graph.add(kind)
    out = graph.add("out")
    graph.connect(inp, first)
    graph.connect(first, second)
    graph.connect(second, out)
    empty = create_empty_parameters({kind: proc}, graph)
    sizes = proc.parameter_size()
    assert set(empty[kind].keys()) == set(sizes)
    for name, shape in sizes.items():
        assert tuple(empty[kind][name].shape) == (2, *shape)


def render_chain(kind, proc, params, num_samples, channels=1):
    """Render in -> proc -> eq -> out with GRAFX and return output and eq params."""
    graph = GRAFX(config=NodeConfigs([kind, "eq"]))
    graph.add_serial_chain(["in", kind, "eq", "out"])
    graph = reorder_for_fast_render(graph, method="beam")
    render_data = prepare_render(convert_to_tensor(graph))
    processors = {kind: proc, "eq": ZeroPhaseFIREqualizer(num_magnitude_bins=33)}
    eq_params = {"log_magnitude": torch.randn(1, 33) * 0.5}
    out, _, _ = render_grafx(processors, torch.zeros(1, channels, num_samples),
                             {kind: params, "eq": eq_params}, render_data)
    return out, processors["eq"], eq_params


@pytest.mark.parametrize("kind", SYNTHS)
def test_synth_renders_inside_grafx_graph_with_grafx_effects(kind):
    params = random_params(SYNTHS[kind](), 1)
    out, eq, eq_params = render_chain(kind, SYNTHS[kind](seed=9), params, SYNTHS[kind]().num_samples)
    expected = eq(SYNTHS[kind](seed=9)(torch.zeros(1, 1, SYNTHS[kind]().num_samples), **params), **eq_params)
    assert out.shape == (1, 1, SYNTHS[kind]().num_samples)
    torch.testing.assert_close(out, expected)
    assert out.abs().max() > 0


def test_time_shift_renders_inside_grafx_graph():
    x = torch.randn(1, 1, 256)
    graph = GRAFX(config=NodeConfigs(["shift", "eq"]))
    graph.add_serial_chain(["in", "eq", "shift", "out"])
    graph = reorder_for_fast_render(graph, method="beam")
    render_data = prepare_render(convert_to_tensor(graph))
    eq = ZeroPhaseFIREqualizer(num_magnitude_bins=17)
    params = {"eq": {"log_magnitude": torch.zeros(1, 17)}, "shift": {}}
    out, _, _ = render_grafx({"eq": eq, "shift": TimeShift(16, seed=2)}, x, params, render_data)
    expected = TimeShift(16, seed=2)(eq(x, **params["eq"]))
    torch.testing.assert_close(out, expected)


# -------------------------------------------------------------- randomness


@pytest.mark.parametrize("kind", SYNTHS)
def test_synth_seed_determinism(kind):
    params = random_params(SYNTHS[kind](), 2)
    a = SYNTHS[kind](seed=11)(None, **params)
    b = SYNTHS[kind](seed=11)(None, **params)
    c = SYNTHS[kind](seed=12)(None, **params)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("kind", SYNTHS)
def test_synth_draws_change_between_calls_unless_deterministic(kind):
    params = random_params(SYNTHS[kind](), 2)
    free = SYNTHS[kind](seed=4)
    assert not torch.allclose(free(None, **params), free(None, **params))
    fixed = SYNTHS[kind](seed=4, deterministic=True)
    torch.testing.assert_close(fixed(None, **params), fixed(None, **params), rtol=0, atol=0)


@pytest.mark.parametrize("kind", SYNTHS)
def test_synth_per_node_seeds_and_generator(kind):
    params = random_params(SYNTHS[kind](), 2)
    seeds = torch.tensor([7, 7])
    # Per-node seeds override the processor's own generator...
    a = SYNTHS[kind](seed=1)(None, seed=seeds, **params)
    b = SYNTHS[kind](seed=2)(None, seed=seeds, **params)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # ...and a caller's generator is used as given.
    g1, g2 = torch.Generator().manual_seed(99), torch.Generator().manual_seed(99)
    torch.testing.assert_close(SYNTHS[kind](generator=g1)(None, **params),
                               SYNTHS[kind](generator=g2)(None, **params), rtol=0, atol=0)


def test_nodes_in_one_call_get_different_draws():
    proc = SYNTHS["granular"](seed=0)
    params = {k: v[:1].expand(2, 1) for k, v in random_params(proc, 1).items()}
    y = proc(None, **params)
    assert not torch.allclose(y[0], y[1])


# ------------------------------------------------------------ physics


@pytest.mark.parametrize("preset", sorted(CHIRPLET_PRESETS))
def test_chirplet_am_and_fm_rates_measured_within_5_percent(preset):
    synth = ChirpletSynth.from_preset(preset, max_shift=0)
    am_lo, am_hi = CHIRPLET_PRESETS[preset]["am_range"]
    fm_lo, fm_hi = CHIRPLET_PRESETS[preset]["fm_range"]
    am, fm = math.sqrt(am_lo * am_hi), math.sqrt(fm_lo * fm_hi)
    params = synth.unconstrained(theta_am=[am], theta_fm=[fm])
    x = synth(None, **{k: v.double() for k, v in params.items()})[0, 0].numpy()
    sr, n = synth.sample_rate, synth.num_samples
    z = analytic(x)
    env = np.abs(z)
    t = (np.arange(n) - n // 2) / sr

    # FM: slope of log2 of the instantaneous frequency where the signal is strong.
    inst_freq = np.diff(np.unwrap(np.angle(z))) * sr / (2 * np.pi)
    strong = env[1:] > 0.2 * env.max()
    fm_measured = np.polyfit(t[1:][strong], np.log2(inst_freq[strong]), 1)[0]
    assert abs(fm_measured - fm) < 0.05 * fm

    # AM: divide the Gaussian window out of the envelope to get the modulator
    # m(t) = (1 + cos(2 pi am t)) / 2, and invert it sample by sample over
    # its first half period, where the window is still well above zero.
    sigma = synth.bandwidth_oct / (synth.window_sigmas * fm)
    usable = (np.abs(t) > 0.05 / am) & (np.abs(t) < min(3 * sigma, 0.45 / am))
    modulation = env[usable] / np.exp(-0.5 * (t[usable] / sigma) ** 2)
    am_estimates = np.arccos(np.clip(2 * modulation - 1, -1, 1)) / (2 * np.pi * np.abs(t[usable]))
    am_measured = np.median(am_estimates)
    assert abs(am_measured - am) < 0.05 * am


def test_chirplet_presets_match_paper_table_3():
    assert CHIRPLET_PRESETS["slow_am_slow_fm"] == {"am_range": (1.0, 2.0), "fm_range": (0.5, 1.0)}
    assert CHIRPLET_PRESETS["fast_am_fast_fm"] == {"am_range": (2.8, 8.4), "fm_range": (4.0, 12.0)}
    synth = ChirpletSynth.from_preset("fast_am_moderate_fm")
    assert (synth.am_range.minimum, synth.am_range.maximum) == (2.8, 8.4)
    assert (synth.fm_range.minimum, synth.fm_range.maximum) == (2.0, 4.0)
    assert (synth.sample_rate, synth.num_samples, synth.f0_hz, synth.bandwidth_oct) == (8192, 32768, 512, 2)


def test_chirplet_time_shift_moves_the_envelope_peak():
    synth = ChirpletSynth(sample_rate=2048, num_samples=4096, f0_hz=256, max_shift=500, seed=3)
    params = synth.unconstrained(theta_am=[1.0], theta_fm=[4.0])
    shift = synth.draw_shifts(1).item()
    synth.random.reset()
    x = synth(None, **params)[0, 0].numpy()
    peak = int(np.argmax(np.abs(analytic(x))))
    assert abs(peak - (4096 // 2 + shift)) < 20


def test_granular_density_sets_number_of_active_grains():
    synth = GranularChirpSynth()
    for d in (0.0, 0.5, 1.0):
        gains = synth.grain_gains(torch.tensor([d]))
        assert abs(gains.sum().item() - 64 ** d) < 0.5


def test_granular_single_grain_chirps_at_the_slope_rate():
    synth = GranularChirpSynth(num_grains=1, f0_range_hz=(500, 501), seed=0, output_rms=None)
    for slope in (-0.4, 0.3):
        params = synth.unconstrained(density=[1.0], slope=[slope])
        x = synth(None, **{k: v.double() for k, v in params.items()})[0, 0].numpy()
        z = analytic(x)
        env = np.abs(z)
        strong = env[1:] > 0.3 * env.max()
        inst_freq = np.diff(np.unwrap(np.angle(z))) * synth.sample_rate / (2 * np.pi)
        t = np.arange(1, len(x)) / synth.sample_rate
        measured = np.polyfit(t[strong], np.log2(inst_freq[strong]), 1)[0]
        expected = synth.chirp_rate(torch.tensor(slope)).item()
        assert np.sign(measured) == np.sign(slope)
        assert abs(measured - expected) < 0.05 * abs(expected)


def test_granular_output_rms():
    synth = SYNTHS["granular"](seed=0)
    y = synth(None, **random_params(synth, 3))
    torch.testing.assert_close(y.pow(2).mean(-1).sqrt(), torch.full((3, 1), 0.1))


def spectral_centroid(x, sr):
    power = torch.fft.rfft(x).abs() ** 2
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / sr)
    return (power * freqs).sum().item() / power.sum().item()


def test_drum_presets_are_ordered_from_kick_to_hihat():
    synth = DrumSynth(seed=0)
    centroids = {}
    for name in DRUM_PRESETS:
        y = synth(None, **synth.preset_parameters(name))[0, 0]
        assert y.abs().max() < 2.0 and torch.isfinite(y).all()
        centroids[name] = spectral_centroid(y, synth.sample_rate)
    assert centroids["kick"] < centroids["tom"] < centroids["snare"] < centroids["hihat"]


def test_drum_kick_fundamental_is_tone_freq():
    synth = DrumSynth(seed=0)
    y = synth(None, **synth.preset_parameters("kick"))[0, 0]
    spectrum = torch.fft.rfft(y).abs()
    freqs = torch.fft.rfftfreq(len(y), 1 / synth.sample_rate)
    peak = freqs[spectrum.argmax()].item()
    assert abs(peak - DRUM_PRESETS["kick"]["tone_freq"]) < 0.1 * DRUM_PRESETS["kick"]["tone_freq"]


def test_drum_preset_round_trip_to_physical():
    synth = DrumSynth()
    params = synth.preset_parameters("snare", num_nodes=3)
    assert all(v.shape == (3, 1) for v in params.values())
    phys = synth.physical(**params)
    for name, value in DRUM_PRESETS["snare"].items():
        torch.testing.assert_close(phys[name], torch.full((3, 1), value), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("sample_rate", [8000, 11025, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("preset", sorted(DRUM_PRESETS))
def test_drum_presets_render_at_every_sample_rate(preset, sample_rate):
    synth = DrumSynth(sample_rate=sample_rate, num_samples=1024, seed=0)
    params = synth.preset_parameters(preset, num_nodes=2)
    assert set(params) == set(DrumSynth.PARAMETER_NAMES)
    assert all(v.shape == (2, 1) and torch.isfinite(v).all() for v in params.values())
    y = synth(None, **params)
    assert y.shape == (2, 1, 1024) and torch.isfinite(y).all()
    assert y.abs().amax(dim=-1).min() > 1e-3
    phys = synth.physical(**params)
    for name, value in phys.items():
        rng = synth.ranges[name]
        assert (value >= rng.minimum).all() and (value <= rng.maximum).all(), name
        # Each value is the preset's, clamped into the (sample-rate dependent) range.
        expected = min(max(DRUM_PRESETS[preset][name], rng.minimum), rng.maximum)
        torch.testing.assert_close(value, torch.full((2, 1), expected), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="unknown drum preset"):
        synth.preset_parameters("cowbell")


def test_drum_preset_clamp_is_logged(caplog):
    synth = DrumSynth(sample_rate=11025, num_samples=256)
    with caplog.at_level(logging.INFO, logger="scrapl_graph.processors.drum"):
        synth.preset_parameters("snare")
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "noise_filter_freq=5000 clamped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="scrapl_graph.processors.drum"):
        DrumSynth(sample_rate=44100, num_samples=256).preset_parameters("snare")
    assert not caplog.records


def test_drum_preset_outside_caller_range_is_refused():
    synth = DrumSynth(sample_rate=11025, num_samples=256, ranges={"noise_filter_freq": (100.0, 4000.0)})
    with pytest.raises(ValueError, match="noise_filter_freq"):
        synth.preset_parameters("snare")
    synth.preset_parameters("kick")  # 3 kHz lies inside


# ------------------------------------------------------------ time shift


@pytest.mark.parametrize("mode", ["zero", "circular"])
def test_time_shift_values(mode):
    x = torch.arange(1.0, 11.0).reshape(1, 1, 10).repeat(2, 2, 1)
    y = TimeShift(5, mode=mode)(x, shift=torch.tensor([3, -2]))
    if mode == "zero":
        expected0 = torch.tensor([0, 0, 0, 1, 2, 3, 4, 5, 6, 7.0])
        expected1 = torch.tensor([3, 4, 5, 6, 7, 8, 9, 10, 0, 0.0])
    else:
        expected0 = torch.roll(x[0, 0], 3)
        expected1 = torch.roll(x[0, 0], -2)
    torch.testing.assert_close(y[0, 1], expected0)
    torch.testing.assert_close(y[1, 0], expected1)


def test_time_shift_random_range_and_gradient():
    shifter = TimeShift(4, seed=0)
    shifts = shifter.draw_shifts(200)
    assert shifts.min() >= -4 and shifts.max() <= 4 and len(set(shifts.tolist())) == 9
    x = torch.randn(3, 2, 32, dtype=torch.float64, requires_grad=True)
    fixed = TimeShift(4, seed=1, deterministic=True)
    assert torch.autograd.gradcheck(lambda s: fixed(s), (x,))


# ------------------------------------------------------------ ranges and errors


def test_param_range_round_trip():
    for rng in (ParamRange(1.0, 8.4, log=True), ParamRange(-1.0, 1.0)):
        values = torch.linspace(rng.minimum, rng.maximum, 7, dtype=torch.float64)[1:-1]
        torch.testing.assert_close(rng.to_physical(rng.to_unconstrained(values)), values)
        z = torch.linspace(-30, 30, 11)
        phys = rng.to_physical(z)
        assert (phys >= rng.minimum).all() and (phys <= rng.maximum).all()


def test_bad_constructor_settings():
    with pytest.raises(ValueError):
        ParamRange(2.0, 1.0)
    with pytest.raises(ValueError):
        ParamRange(0.0, 1.0, log=True)
    with pytest.raises(ValueError):
        ChirpletSynth(fm_range=(-1.0, 1.0))
    with pytest.raises(ValueError):
        ChirpletSynth(f0_hz=5000.0)  # above Nyquist at 8192 Hz
    with pytest.raises(ValueError):
        ChirpletSynth(num_samples=1000, max_shift=1000)
    with pytest.raises(ValueError):
        ChirpletSynth.from_preset("very_fast")
    with pytest.raises(TypeError):
        ChirpletSynth(num_samples=1.5)
    with pytest.raises(ValueError):
        ChirpletSynth(seed=1, generator=torch.Generator())
    with pytest.raises(ValueError):
        ChirpletSynth(input_mode="replace")
    with pytest.raises(ValueError):
        GranularChirpSynth(grain_samples=40000)
    with pytest.raises(ValueError):
        GranularChirpSynth(slope_warp=1.0)
    with pytest.raises(ValueError):
        GranularChirpSynth(density_range=(0.0, 2.0))
    with pytest.raises(ValueError):
        DrumSynth(ranges={"cowbell": (0, 1)})
    with pytest.raises(ValueError):
        DrumSynth(sample_rate=8000, ranges={"noise_filter_freq": (100, 5000)})
    with pytest.raises(ValueError):
        DrumSynth().preset_parameters("cowbell")
    with pytest.raises(ValueError):
        TimeShift(mode="reflect")
    with pytest.raises(ValueError):
        TimeShift(max_shift=-1)


@pytest.mark.parametrize("kind", SYNTHS)
def test_bad_forward_inputs(kind):
    proc = SYNTHS[kind]()
    params = random_params(proc, 2)
    n = proc.num_samples
    with pytest.raises(ValueError, match="input_signals"):
        proc(torch.zeros(2, 1, n + 1), **params)
    with pytest.raises(ValueError, match="nodes"):
        proc(torch.zeros(3, 1, n), **params)
    with pytest.raises(TypeError):
        proc(torch.zeros(2, 1, n, dtype=torch.long), **params)
    name = next(iter(params))
    with pytest.raises(ValueError, match=name):
        proc(None, **{**params, name: torch.zeros(2, 3)})
    with pytest.raises(TypeError, match=name):
        proc(None, **{**params, name: torch.zeros(2, 1, dtype=torch.long)})
    with pytest.raises(TypeError):
        proc(None, **{k: v for k, v in params.items() if k != name})  # missing parameter
    with pytest.raises(ValueError):
        proc(None, seed=torch.tensor([1, 2, 3]), **params)


def test_time_shift_bad_inputs():
    with pytest.raises(ValueError):
        TimeShift(4)(torch.zeros(8, 16))
    with pytest.raises(ValueError):
        TimeShift(16)(torch.zeros(1, 1, 16))
    with pytest.raises(TypeError):
        TimeShift(4)(torch.zeros(1, 1, 16), shift=torch.tensor([1.5]))
    with pytest.raises(ValueError):
        TimeShift(4)(torch.zeros(2, 1, 16), shift=torch.tensor([1]))
