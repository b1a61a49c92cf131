"""The stateful effects: reference recursions, chunked streaming equals one call, block-rate error."""
import math

import pytest
import torch

from scrapl_graph.processors import (LFO, Biquad, EnvelopeCompressor, ModulatedDelay, OnePoleLowpass, Phaser,
                                     Tremolo)
from scrapl_graph.processors.iir import rbj_coefficients
from scrapl_graph.processors.lfo import lfo_waveform
from scrapl_graph.processors.phaser import allpass_coefficient
from scrapl_graph.processors.scan import blockwise_linear_scan

SR = 8000.0
# Chunked output against one call: |diff| <= TOL * max|y|. In float32 the chunked and one-call
# renders round differently (the scan regroups the recursion); a 38 Hz biquad's own float32
# error against float64 is 6e-5 of its peak, so 1e-4 is the float32 tolerance. In float64 the
# two agree to 1e-10.
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def _effects():
    return [Tremolo(SR), Phaser(SR, block_size=16), ModulatedDelay(SR, "flanger"), ModulatedDelay(SR, "chorus"),
            OnePoleLowpass(SR), Biquad(SR, "bandpass"), EnvelopeCompressor(SR)]


def _params(effect, nodes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(nodes, 1, generator=g) for k in effect.parameter_size()}


def _stream(effect, x, params, chunk):
    effect.streaming = True
    effect.reset_states()
    try:
        outs = []
        for i in range(0, x.shape[-1], chunk):
            effect.begin_render()
            outs.append(effect(x[..., i:i + chunk], **params))
        return torch.cat(outs, -1)
    finally:
        effect.streaming = False


@pytest.mark.parametrize("effect", _effects(), ids=lambda e: type(e).__name__ + getattr(e, "mode", ""))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_streaming_equals_one_call(effect, dtype):
    x = torch.randn(3, 2, 3000, generator=torch.Generator().manual_seed(1), dtype=dtype)
    params = {k: v.to(dtype) for k, v in _params(effect, 3).items()}
    whole = effect(x, **params)
    assert whole.shape == x.shape and whole.dtype == dtype and torch.isfinite(whole).all()
    for chunk in (16 * 7, 16 * 50):  # the last chunk is shorter
        chunked = _stream(effect, x, params, chunk)
        assert (chunked - whole).abs().max() <= TOL[dtype] * whole.abs().max()


def test_stateless_by_default_and_states_detach():
    effect = Phaser(SR, block_size=16)
    x = torch.randn(1, 1, 640)
    params = {k: v.requires_grad_() for k, v in _params(effect, 1).items()}
    assert torch.equal(effect(x, **params), effect(x, **params))  # no state kept
    effect.streaming = True
    effect.begin_render()
    effect(x, **params)
    assert any(v.requires_grad for v in effect._slots[0][1].values())
    effect.detach_states()
    assert not any(v.requires_grad for v in effect._slots[0][1].values())
    effect.begin_render()
    with pytest.raises(RuntimeError, match="nodes"):
        effect(torch.randn(2, 1, 640), **_params(effect, 2))


def test_lfo_waveforms_and_phase():
    phase = torch.tensor([0.0, 0.25, 0.5, 0.75])
    torch.testing.assert_close(lfo_waveform(phase, "sine"), torch.tensor([0.0, 1.0, 0.0, -1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(lfo_waveform(phase, "triangle"), torch.tensor([0.0, 1.0, 0.0, -1.0]))
    torch.testing.assert_close(lfo_waveform(phase, "saw"), torch.tensor([-1.0, -0.5, 0.0, 0.5]))
    one = torch.ones(1, 1, 1)
    m, end = LFO("sine").run(0.25 * one, 2.0 * one, 0.5 * one, 100, 100.0)
    assert m.shape == (1, 1, 100) and abs(float(m[0, 0, 0]) - 0.5) < 1e-6
    assert abs(float(end) - 0.25) < 1e-12  # two full cycles later
    with pytest.raises(ValueError):
        LFO("square")


def _naive_phaser(x, a, g, stages):
    v, w, out = [0.0] * stages, 0.0, []
    for n in range(len(x)):
        u = x[n] + g * w
        for i in range(stages):
            y = a[n] * u + v[i]
            v[i] = u - a[n] * y
            u = y
        w = u
        out.append(u)
    return torch.tensor(out)


def test_phaser_matches_a_sample_loop():
    effect = Phaser(SR, stages=3, block_size=8)
    params = _params(effect, 1, seed=3)
    x = torch.randn(1, 1, 200, dtype=torch.float64)
    y = effect(x, **{k: v.double() for k, v in params.items()})
    p = {k: v[:, None] for k, v in effect.physical(**{k: v.double() for k, v in params.items()}).items()}
    m, _ = effect.lfo.run(p["lfo_phase"], p["lfo_rate"], p["lfo_depth"], 200, SR, hop=8)
    a = allpass_coefficient(p["center"] * 2.0 ** (effect.sweep_octaves * m), SR)[0, 0].repeat_interleave(8)
    wet = _naive_phaser(x[0, 0].tolist(), a.tolist(), float(p["feedback"]), 3)
    mix = float(p["mix"])
    torch.testing.assert_close(y[0, 0], (1 - mix) * x[0, 0] + mix * wet.double())


def test_biquad_and_one_pole_match_difference_equations():
    x = torch.randn(1, 1, 300, dtype=torch.float64)
    biquad = Biquad(SR, "lowpass")
    params = {"cutoff": torch.tensor([[0.3]]), "q": torch.tensor([[0.2]])}
    y = biquad(x, **{k: v.double() for k, v in params.items()})[0, 0]
    p = biquad.physical(**{k: v.double() for k, v in params.items()})
    b0, b1, b2, a1, a2 = [float(c) for c in rbj_coefficients("lowpass", p["cutoff"].double(), p["q"].double(), SR)]
    ref, xs = [], x[0, 0].tolist()
    for n in range(300):
        xm1, xm2 = (xs[n - 1] if n >= 1 else 0.0), (xs[n - 2] if n >= 2 else 0.0)
        ym1, ym2 = (ref[n - 1] if n >= 1 else 0.0), (ref[n - 2] if n >= 2 else 0.0)
        ref.append(b0 * xs[n] + b1 * xm1 + b2 * xm2 - a1 * ym1 - a2 * ym2)
    torch.testing.assert_close(y, torch.tensor(ref, dtype=torch.float64))
    one_pole = OnePoleLowpass(SR)
    cutoff = torch.tensor([[0.0]], dtype=torch.float64)
    a = math.exp(-2 * math.pi * float(one_pole.physical(cutoff=cutoff)["cutoff"]) / SR)
    y, ref, prev = one_pole(x, cutoff=cutoff)[0, 0], [], 0.0
    for v in xs:
        prev = a * prev + (1 - a) * v
        ref.append(prev)
    torch.testing.assert_close(y, torch.tensor(ref, dtype=torch.float64))


def test_scan_with_partial_last_block():
    g = torch.Generator().manual_seed(0)
    A = 0.5 * torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
    u = torch.randn(2, 29, 3, generator=g, dtype=torch.float64)
    s0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    states, final = blockwise_linear_scan(A, u, s0, 8)
    s, ref = s0, []
    for n in range(29):
        ref.append(s)
        s = (A[:, n // 8] @ s[..., None])[..., 0] + u[:, n]
    torch.testing.assert_close(states, torch.stack(ref, 1))
    torch.testing.assert_close(final, s)


def test_phaser_block_rate_error():
    """Block-rate coefficients (32 samples at 22.05 kHz) against per-sample updates: relative L2 error."""
    sr = 22050.0
    x = torch.randn(1, 1, 22050, generator=torch.Generator().manual_seed(0))
    block, exact = Phaser(sr, block_size=32), Phaser(sr, block_size=1)
    params = block.unconstrained(lfo_rate=2.0, lfo_depth=1.0, lfo_phase=0.1, center=600.0, feedback=0.5)
    params["mix"] = torch.zeros(1, 1)
    y_block, y_exact = block(x, **params), exact(x, **params)
    assert float((y_block - y_exact).norm() / y_exact.norm()) < 0.01


def test_tremolo_gain_and_compressor_reduces_loud_parts():
    x = torch.ones(1, 1, 800)
    tremolo = Tremolo(SR)
    p = tremolo.unconstrained(lfo_rate=10.0, lfo_depth=0.6, lfo_phase=0.25)
    y = tremolo(x, **p)
    assert abs(float(y.max()) - 1.0) < 1e-3 and abs(float(y.min()) - 0.4) < 1e-3
    comp = EnvelopeCompressor(SR)
    p = comp.unconstrained(time_ms=5.0, threshold_db=-20.0, ratio=4.0)
    loud = comp(x, **p)
    assert float(loud[0, 0, -1]) == pytest.approx(10 ** ((-20 + 20 / 4) / 20), rel=1e-3)
