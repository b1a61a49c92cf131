"""GRAFX graphs as differentiable synths: theta layout, batched rendering, predictor heads."""
import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from grafx.data import GRAFX, NodeConfigs
    from grafx.data.conversion import convert_to_tensor
    from grafx.processors import STFTMaskedNoiseReverb, StereoGain, ZeroPhaseFIREqualizer
    from grafx.render import prepare_render, render_grafx, reorder_for_fast_render
    from grafx.utils import create_empty_parameters

from scrapl_graph.graph import GraphSynth, ThetaLayout, make_predictor_head, render_theta
from scrapl_graph.processors import ChirpletSynth, DrumSynth, TimeShift

N = 2048


def mono_graph():
    """in -> chirplet -> eq -> shift -> out, plus in -> drum -> shift (summed)."""
    graph = GRAFX(config=NodeConfigs(["chirplet", "drum", "eq", "shift"]))
    inp = graph.add("in")
    chirp = graph.add("chirplet")
    eq = graph.add("eq")
    drum = graph.add("drum")
    shift = graph.add("shift")
    out = graph.add("out")
    for a, b in [(inp, chirp), (chirp, eq), (eq, shift), (inp, drum), (drum, shift), (shift, out)]:
        graph.connect(a, b)
    processors = {
        "chirplet": ChirpletSynth(sample_rate=2048, num_samples=N, f0_hz=256, max_shift=0),
        "drum": DrumSynth(sample_rate=8000, num_samples=N, seed=0, deterministic=True),
        "eq": ZeroPhaseFIREqualizer(num_magnitude_bins=65),
        "shift": TimeShift(max_shift=0),
    }
    return graph, processors


def stereo_graph():
    """Two chirplet voices summed into eq -> eq -> reverb -> gain -> out (stereo).

    The two eq nodes sit at different rendering steps, so that GRAFX's row
    order of a batch of copies differs from the example-major order.
    """
    graph = GRAFX(config=NodeConfigs(["chirplet", "eq", "reverb", "gain"]))
    inp = graph.add("in")
    c1, c2 = graph.add("chirplet"), graph.add("chirplet")
    eq1, eq2 = graph.add("eq"), graph.add("eq")
    reverb = graph.add("reverb")
    gain = graph.add("gain")
    out = graph.add("out")
    for a, b in [(inp, c1), (inp, c2), (c1, eq1), (c2, eq1), (eq1, eq2), (eq2, reverb), (reverb, gain),
                 (gain, out)]:
        graph.connect(a, b)
    processors = {
        "chirplet": ChirpletSynth(sample_rate=2048, num_samples=N, f0_hz=256, max_shift=0),
        "eq": ZeroPhaseFIREqualizer(num_magnitude_bins=65),
        "reverb": STFTMaskedNoiseReverb(ir_len=1024, n_fft=128, hop_length=64, flashfftconv=False,
                                        max_input_len=N),
        "gain": StereoGain(),
    }
    return graph, processors


def test_layout_matches_create_empty_parameters():
    graph, processors = mono_graph()
    layout = ThetaLayout.from_graph(processors, graph)
    empty = create_empty_parameters(processors, graph)
    assert layout.n_theta == sum(p.numel() for p in empty.parameters())
    assert layout.n_theta == 2 + 14 + 65
    assert len(layout.labels()) == layout.n_theta
    dicts = layout.to_dicts(torch.zeros(1, layout.n_theta))
    for node_type, params in empty.items():
        assert set(dicts[node_type]) == set(params.keys())
        for name, value in params.items():
            assert dicts[node_type][name].shape == value.shape


def test_theta_round_trip():
    graph, processors = stereo_graph()
    layout = ThetaLayout.from_graph(processors, graph)
    theta = torch.randn(5, layout.n_theta)
    dicts = layout.to_dicts(theta)
    assert dicts["chirplet"]["theta_am"].shape == (5 * 2, 1)
    assert dicts["reverb"]["init_log_magnitude"].shape == (5, 2, 65)
    torch.testing.assert_close(layout.to_theta(dicts), theta, rtol=0, atol=0)
    # And from GRAFX's own (B = 1) parameter dicts.
    empty = create_empty_parameters(processors, graph)
    again = layout.to_dicts(layout.to_theta(empty))
    for node_type, params in empty.items():
        for name, value in params.items():
            torch.testing.assert_close(again[node_type][name], value.detach(), rtol=0, atol=0)


def test_layout_rows_are_example_major():
    graph, processors = stereo_graph()
    layout = ThetaLayout.from_graph(processors, graph)
    theta = torch.arange(2 * layout.n_theta, dtype=torch.float32).reshape(2, -1)
    am = layout.to_dicts(theta)["chirplet"]["theta_am"][:, 0]
    # Columns 0, 1 hold theta_am of the two chirplet nodes, for each example.
    torch.testing.assert_close(am, torch.tensor([0.0, 1.0, layout.n_theta, layout.n_theta + 1.0]))


def test_nested_parameter_sizes():
    class Nested(torch.nn.Module):
        def parameter_size(self):
            return {"outer": 2, "inner": {"a": (2, 3), "b": 1}}

    layout = ThetaLayout({"x": Nested()}, {"x": 2})
    assert layout.n_theta == 2 * (2 + 6 + 1)
    theta = torch.randn(3, layout.n_theta)
    dicts = layout.to_dicts(theta)
    assert dicts["x"]["inner"]["a"].shape == (6, 2, 3)
    torch.testing.assert_close(layout.to_theta(dicts), theta)


def test_graph_synth_matches_direct_grafx_render():
    graph, processors = mono_graph()
    synth = GraphSynth(graph, processors, num_samples=N)
    theta = torch.randn(1, synth.n_theta)
    ours = synth(theta)
    # Direct GRAFX rendering of the same graph: node ids already give the
    # per-type order, so the layout's dicts are GRAFX's parameters as they are.
    ordered = reorder_for_fast_render(graph, method="beam")
    direct, _, _ = render_grafx(processors, torch.zeros(1, 1, N), synth.layout.to_dicts(theta),
                                prepare_render(convert_to_tensor(ordered)))
    assert ours.shape == (1, 1, N)
    torch.testing.assert_close(ours, direct)
    assert ours.abs().max() > 0


def test_batched_rendering_equals_one_example_at_a_time():
    graph, processors = stereo_graph()
    synth = GraphSynth(graph, processors, num_samples=N, num_channels=2)
    theta = torch.randn(4, synth.n_theta)
    batch = synth(theta)
    assert batch.shape == (4, 2, N)
    for b in range(4):
        torch.testing.assert_close(batch[b:b + 1], synth(theta[b:b + 1]), rtol=1e-4, atol=1e-5)
    # Different thetas give different audio.
    assert not torch.allclose(batch[0], batch[1])


def test_graph_synth_gradients_reach_every_theta_column():
    graph, processors = mono_graph()
    synth = GraphSynth(graph, processors, num_samples=N)
    theta = torch.randn(3, synth.n_theta, requires_grad=True)
    synth(theta).square().sum().backward()
    assert torch.isfinite(theta.grad).all()
    assert (theta.grad.abs().sum(0) > 0).all()


def test_graph_synth_input_signals_are_added_by_synths():
    graph, processors = mono_graph()
    synth = GraphSynth(graph, processors, num_samples=N)
    theta = torch.randn(2, synth.n_theta)
    silent = synth(theta)
    # A source passes through both synths ("add"), the eq and the shift; the
    # graph is linear in its source, so the difference is the source's path.
    source = torch.randn(2, 1, N)
    with_source = synth(theta, input_signals=source)
    eq = processors["eq"]
    eq_params = synth.layout.to_dicts(theta)["eq"]
    expected = eq(source, **eq_params) + source
    torch.testing.assert_close(with_source - silent, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        synth(theta, input_signals=torch.zeros(2, 1, N + 1))


def test_render_theta_helper_and_predictor_head():
    graph, processors = mono_graph()
    synth = GraphSynth(graph, processors, num_samples=N)
    theta = torch.randn(2, synth.n_theta)
    torch.testing.assert_close(render_theta(graph, processors, theta, num_samples=N), synth(theta))

    head = make_predictor_head(synth.layout, in_features=16, init_std=1e-2)
    assert (head.in_features, head.out_features) == (16, synth.n_theta)
    assert make_predictor_head(synth, 16).out_features == synth.n_theta
    audio = synth(head(torch.randn(2, 16)))
    audio.square().mean().backward()
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0


def test_graph_errors():
    graph, processors = mono_graph()
    synth = GraphSynth(graph, processors, num_samples=N)
    with pytest.raises(ValueError, match="theta"):
        synth(torch.zeros(2, synth.n_theta + 1))
    with pytest.raises(TypeError):
        synth(torch.zeros(2, synth.n_theta, dtype=torch.long))
    with pytest.raises(ValueError, match="no processor"):
        GraphSynth(graph, {k: v for k, v in processors.items() if k != "eq"}, num_samples=N)
    two_outs = GRAFX(config=NodeConfigs(["eq"]))
    i, e = two_outs.add("in"), two_outs.add("eq")
    two_outs.connect(i, e)
    two_outs.connect(e, two_outs.add("out"))
    two_outs.connect(e, two_outs.add("out"))
    with pytest.raises(ValueError, match="out"):
        GraphSynth(two_outs, {"eq": ZeroPhaseFIREqualizer()}, num_samples=N)
    with pytest.raises(TypeError):
        GraphSynth("not a graph", processors, num_samples=N)
    layout = synth.layout
    dicts = layout.to_dicts(torch.zeros(2, layout.n_theta))
    del dicts["eq"]
    with pytest.raises(ValueError, match="eq"):
        layout.to_theta(dicts)
    with pytest.raises(ValueError):
        make_predictor_head(layout, in_features=0)
    with pytest.raises(TypeError):
        ThetaLayout({"bad": torch.nn.Identity()}, {"bad": 1})
