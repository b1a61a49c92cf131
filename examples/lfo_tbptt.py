"""Recover an LFO-driven tremolo's and phaser's rate and depth from a minute of processed audio with TBPTT.

A music-like source (chords, noise bursts, drums from the drum synth) goes
through ``in -> tremolo -> phaser -> out`` at 22.05 kHz. The rates and depths
of both LFOs are estimated from the processed audio, with their phases
unknown, by truncated backpropagation through time: sub-sequences of 2^15
samples (1.49 s), groups of three (one warm-up, two lossed), one optimizer
step per lossed sub-sequence. The same run is made with SCRAPL (one JTFS path
per sub-sequence), the full JTFS and MSS; the table gives the error of each
rate and depth in percent and the wall time. ``--memory`` also measures the
peak memory of one TBPTT pass and of one direct pass through the whole signal.

    PYTHONPATH=. python examples/lfo_tbptt.py [--seconds 60] [--epochs 2] [--memory]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from scrapl_graph.graph import GraphSynth
from scrapl_graph.processors import DrumSynth, Phaser, Tremolo
from scrapl_graph.train import tbptt_optimize

SR = 22050
SUB = 2 ** 15
TRUE = {"tremolo": dict(lfo_rate=5.0, lfo_depth=0.7, lfo_phase=0.3),
        "phaser": dict(lfo_rate=0.7, lfo_depth=0.8, lfo_phase=0.6, center=600.0, feedback=0.5, mix=0.5)}
START = {"tremolo": dict(lfo_rate=3.0, lfo_depth=0.4), "phaser": dict(lfo_rate=1.2, lfo_depth=0.4)}
JTFS = dict(J=12, Q1=8, Q2=1, J_fr=2, Q_fr=1, T=None, F=None)


def music_like_source(seconds: float, seed: int = 0) -> torch.Tensor:
    """Chords (saw-like partials, a new chord every 2 s), noise bursts and kick/snare/hi-hat drums, ``(1, 1, T)``."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SR)
    t = torch.arange(n) / SR
    out = torch.zeros(n)
    roots = [220.0, 174.6, 261.6, 196.0]
    for k, start in enumerate(range(0, n, 2 * SR)):
        seg = slice(start, min(n, start + 2 * SR))
        root = roots[k % len(roots)]
        for ratio in (1.0, 1.26, 1.5):  # a major triad
            for h in range(1, 6):
                out[seg] += 0.04 / h * torch.sin(2 * math.pi * root * ratio * h * t[seg])
    for _ in range(int(seconds / 3)):  # noise bursts with an exponential decay
        at, length = int(torch.randint(0, n - SR // 2, (1,), generator=g)), SR // 2
        env = torch.exp(-torch.arange(length) / (0.08 * SR))
        out[at:at + length] += 0.2 * env * torch.randn(length, generator=g)
    drums = DrumSynth(SR, SR // 2, input_mode="ignore", deterministic=True)
    hits = {}
    for name in ("kick", "snare", "hihat"):
        with torch.no_grad():
            hits[name] = drums(torch.zeros(1, 1, SR // 2), **drums.preset_parameters(name))[0, 0]
    beat = int(0.5 * SR)  # 120 bpm
    for i, at in enumerate(range(0, n - SR // 2, beat)):
        name = "kick" if i % 2 == 0 else "snare"
        out[at:at + SR // 2] += 0.5 * hits[name]
        out[at + beat // 2:at + beat // 2 + SR // 2] += 0.2 * hits["hihat"][: max(0, min(SR // 2, n - at - beat // 2))]
    return (out / out.abs().max())[None, None]


def build():
    processors = {"tremolo": Tremolo(SR, lfo_rate=(1.0, 12.0)), "phaser": Phaser(SR, lfo_rate=(0.1, 4.0))}
    synth = GraphSynth.chain(processors, num_samples=SUB)
    return synth, processors


def theta_of(processors, values) -> torch.Tensor:
    parts = []
    for name, proc in processors.items():
        full = {**TRUE[name], **values.get(name, {})}
        parts += [proc.unconstrained(**{k: full[k]})[k] for k in proc.ranges]
    return torch.cat(parts, dim=1)


def report(processors, theta) -> dict:
    """Physical rate and depth of both LFOs, and their errors in percent."""
    out, col = {}, 0
    for name, proc in processors.items():
        phys = proc.physical(**{k: theta[:, col + i:col + i + 1] for i, k in enumerate(proc.ranges)})
        for key in ("lfo_rate", "lfo_depth"):
            value, true = float(phys[key]), TRUE[name][key]
            out[f"{name}.{key}"] = (value, 100 * abs(value - true) / true)
        col += len(proc.ranges)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--losses", default="scrapl,jtfs,mss")
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    synth, processors = build()
    x = music_like_source(args.seconds)
    true = theta_of(processors, {})
    with torch.no_grad():
        y = synth.render(true, x)
    theta0 = theta_of(processors, START)
    labels = synth.layout.labels()
    trainable = [i for i, label in enumerate(labels) if "lfo_rate" in label or "lfo_depth" in label]
    specs = {"scrapl": {"class_path": "scrapl", "init_args": dict(shape=None, **JTFS, grad_mult=1.0e8)},
             "jtfs": {"class_path": "jtfs", "init_args": dict(shape=SUB, **JTFS)},
             "mss": "mss"}
    print(f"{args.seconds:.0f} s of audio, sub-sequences of {SUB} samples, groups of 3; start: {report(processors, theta0)}")
    for name in args.losses.split(","):
        t0 = time.perf_counter()
        result = tbptt_optimize(synth, x, y, specs[name], theta0, sub_length=SUB, num_sub=3, trainable=trainable,
                                lr=0.05, epochs=args.epochs, max_steps=args.max_steps, seed=0)
        errors = report(processors, result.theta)
        cells = ", ".join(f"{k} {v:.3g} ({e:.1f} %)" for k, (v, e) in errors.items())
        print(f"{name:7s} {result.steps} steps, {time.perf_counter() - t0:.0f} s: {cells}")
    if args.memory:
        from scrapl_graph.train.memory import measure_peak_memory

        for mode in ("tbptt", "direct"):
            m = measure_peak_memory(args.seconds, mode)
            print(f"peak memory beyond the signal, {mode}: {m['peak_mib']:.0f} MiB ({m['elapsed_s']:.1f} s)")


if __name__ == "__main__":
    main()
