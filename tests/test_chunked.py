"""Chunked rendering of graphs of effects and memoryless GRAFX processors equals one render."""
import pytest
import torch
from grafx.data import GRAFX, NodeConfigs
from grafx.processors import StereoGain, ZeroPhaseFIREqualizer

from scrapl_graph.graph import ChunkedRenderer, GraphSynth, chunk_alignment
from scrapl_graph.processors import (Biquad, EnvelopeCompressor, ModulatedDelay, OnePoleLowpass, Phaser, Tremolo)

SR = 8000.0
LENGTH = 2400


def _mixed_graph():
    """in -> tremolo -> phaser -> mix ; in -> chorus -> gain -> mix ; mix -> flanger -> lowpass -> biquad -> comp -> out."""
    processors = {"tremolo": Tremolo(SR), "phaser": Phaser(SR, block_size=16), "chorus": ModulatedDelay(SR, "chorus"),
                  "gain": StereoGain(), "flanger": ModulatedDelay(SR, "flanger"), "lowpass": OnePoleLowpass(SR),
                  "biquad": Biquad(SR, "highpass", cutoff=(20.0, 200.0)), "comp": EnvelopeCompressor(SR)}
    graph = GRAFX(config=NodeConfigs(list(processors)))
    n = {t: graph.add(t) for t in ["in", *processors, "mix", "out"]}
    for a, b in [("in", "tremolo"), ("tremolo", "phaser"), ("phaser", "mix"), ("in", "chorus"), ("chorus", "gain"),
                 ("gain", "mix"), ("mix", "flanger"), ("flanger", "lowpass"), ("lowpass", "biquad"),
                 ("biquad", "comp"), ("comp", "out")]:
        graph.connect(n[a], n[b])
    return GraphSynth(graph, processors, num_samples=LENGTH, num_channels=2)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_chunked_graph_equals_one_render(dtype, tol):
    synth = _mixed_graph().to(dtype)
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(2, synth.n_theta, generator=g, dtype=dtype)
    x = torch.randn(2, 2, LENGTH, generator=g, dtype=dtype)
    whole = synth(theta, x)
    # The compressor scales its output down, so the tolerance is relative to the larger of the
    # input and output peaks; the float32 one-call render's own error against float64 is of the same order.
    scale = max(whole.abs().max(), x.abs().max())
    renderer = ChunkedRenderer(synth)
    assert renderer.alignment == 16
    for chunk in (16 * 9, 16 * 40):
        chunked = renderer.render(theta, x, chunk)
        assert (chunked - whole).abs().max() <= tol * scale
    assert torch.equal(synth(theta, x), whole)  # one-call rendering kept no state


def test_chunked_gradients_and_detach():
    synth = _mixed_graph()
    theta = torch.zeros(1, synth.n_theta, requires_grad=True)
    x = torch.randn(1, 2, 640)
    renderer = ChunkedRenderer(synth)
    renderer.reset_states()
    renderer.render_chunk(theta, x[..., :320]).sum().backward()
    renderer.detach_states()
    second = renderer.render_chunk(theta, x[..., 320:]).sum()
    theta.grad = None
    second.backward()  # no error: the first chunk's graph is not needed any more
    assert theta.grad is not None and torch.isfinite(theta.grad).all()


def test_refuses_non_causal_and_misaligned_chunks():
    graph = GRAFX(config=NodeConfigs(["eq"]))
    nodes = [graph.add(t) for t in ["in", "eq", "out"]]
    graph.connect(nodes[0], nodes[1])
    graph.connect(nodes[1], nodes[2])
    with pytest.raises(ValueError, match="cannot be rendered in chunks"):
        chunk_alignment(GraphSynth(graph, {"eq": ZeroPhaseFIREqualizer()}, num_samples=256))
    synth = GraphSynth.chain({"phaser": Phaser(SR, block_size=16)}, num_samples=256)
    renderer = ChunkedRenderer(synth)
    with pytest.raises(ValueError, match="multiple of 16"):
        renderer.render(torch.zeros(1, synth.n_theta), torch.randn(1, 1, 256), 20)
    renderer.reset_states()
    renderer.render_chunk(torch.zeros(1, synth.n_theta), torch.randn(1, 1, 20))
    with pytest.raises(ValueError, match="last chunk"):
        renderer.render_chunk(torch.zeros(1, synth.n_theta), torch.randn(1, 1, 16))
