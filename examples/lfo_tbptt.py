"""Recover an LFO-driven phaser's (and tremolo's) rate and depth from a minute of processed audio with TBPTT.

A music-like source (chords, noise bursts, drums from the drum synth) goes
through the chosen effects (``--effects``: the phaser by default, the tremolo,
or ``in -> tremolo -> phaser -> out``) at 22.05 kHz. The LFOs' rates and
depths are estimated from the processed audio, with their phases unknown, by
truncated backpropagation through time: sequences of three sub-sequences of
2^15 samples (1.49 s; one warm-up, two lossed), 32 sequences per step, one
optimizer step per lossed sub-sequence. The same run is made with SCRAPL
(one JTFS path per step), the full JTFS and MSS; the table gives the error of
each rate and depth in percent and the wall time. ``--memory`` also measures
the peak memory of one TBPTT pass and of one direct pass through the whole
signal. ``--true`` sets other true values (``effect.key=value``, comma-separated;
the start stays), ``--source_seed`` draws another source.

The LFO phase is a nuisance: every sequence starts its LFO at a random phase
(``nuisance`` of :func:`~scrapl_graph.train.tbptt_optimize`), and both JTFS
losses compare the batch's mean coefficients (``compare="batch_mean"``),
summed over time and log-frequency and log-compressed, with the targets'
mean. Per example, the comparison at the true rate depends on the LFO's phase
relative to the music, and its minimum is biased; between batch means the
phase is averaged out on both sides. MSS compares time frames: it keeps its
per-example form.

``--landscape tremolo`` (or ``phaser``) shows the losses against the rate:
that effect alone on the source, each loss taken on windows spread over the
signal with the estimate's LFO restarted at phase 0 one sub-sequence before
the window (as a TBPTT sequence does), averaged over the windows, and the
per-path JTFS error between the windows' mean coefficients.

    PYTHONPATH=. python examples/lfo_tbptt.py [--effects phaser] [--seconds 60] [--epochs 8] [--memory]
    PYTHONPATH=. python examples/lfo_tbptt.py --true phaser.lfo_rate=1.7,phaser.lfo_depth=0.6 [--source_seed 1]
    PYTHONPATH=. python examples/lfo_tbptt.py --landscape phaser [--windows 24]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from scrapl_graph.graph import ChunkedRenderer, GraphSynth
from scrapl_graph.jtfs import JTFS as JTFSTransform
from scrapl_graph.losses import build_loss
from scrapl_graph.processors import DrumSynth, Phaser, Tremolo
from scrapl_graph.train import tbptt_optimize

SR = 22050
SUB = 2 ** 15
TRUE = {"tremolo": dict(lfo_rate=5.0, lfo_depth=0.7, lfo_phase=0.3),
        "phaser": dict(lfo_rate=0.7, lfo_depth=0.8, lfo_phase=0.6, center=600.0, feedback=0.5, mix=0.5)}
START = {"tremolo": dict(lfo_rate=3.0, lfo_depth=0.4), "phaser": dict(lfo_rate=1.2, lfo_depth=0.4)}
# Summed over time and log-frequency: invariant to where the LFO's cycles fall in a window.
JTFS = dict(J=12, Q1=8, Q2=1, J_fr=2, Q_fr=1, T="global", F="global")
# How both JTFS losses compare: the batch's mean coefficients, log-compressed (paths of every energy count).
COMPARE = dict(compare="batch_mean", use_rho_log1p=True, log1p_eps=1e-2)


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
    drums = DrumSynth(SR, SR // 2, input_mode="ignore", seed=seed, deterministic=True)
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


def build(effects=("tremolo", "phaser"), sub: int = SUB):
    available = {"tremolo": lambda: Tremolo(SR, lfo_rate=(1.0, 12.0)), "phaser": lambda: Phaser(SR, lfo_rate=(0.1, 4.0))}
    processors = {name: available[name]() for name in effects}
    synth = GraphSynth.chain(processors, num_samples=sub)
    return synth, processors


def with_true(text: str = None) -> dict:
    """``TRUE`` with ``effect.key=value`` overrides (comma-separated), e.g. ``phaser.lfo_rate=1.5``."""
    true = {name: dict(values) for name, values in TRUE.items()}
    keys = sorted(f"{n}.{k}" for n in true for k in true[n])
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        name, _, param = key.strip().partition(".")
        error = SystemExit(f"--true: expected effect.key=value (a number) with keys {keys}, got {item!r}")
        if name not in true or param not in true[name]:
            raise error
        try:
            true[name][param] = float(value)
        except ValueError:
            raise error from None
    return true


def theta_of(processors, values, true=TRUE) -> torch.Tensor:
    parts = []
    for name, proc in processors.items():
        full = {**true[name], **values.get(name, {})}
        parts += [proc.unconstrained(**{k: full[k]})[k] for k in proc.ranges]
    return torch.cat(parts, dim=1)


def report(processors, theta, true=TRUE) -> dict:
    """Physical rate and depth of both LFOs, and their errors in percent."""
    out, col = {}, 0
    for name, proc in processors.items():
        phys = proc.physical(**{k: theta[:, col + i:col + i + 1] for i, k in enumerate(proc.ranges)})
        for key in ("lfo_rate", "lfo_depth"):
            value, truth = float(phys[key]), true[name][key]
            out[f"{name}.{key}"] = (value, 100 * abs(value - truth) / truth)
        col += len(proc.ranges)
    return out


LANDSCAPE_RATES = {"tremolo": (2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0),
                   "phaser": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.6)}


def landscape(effect: str, x: torch.Tensor, windows: int, rates=None, sub: int = SUB, jtfs_config=None, true=TRUE):
    """Rows ``(rate, per-path JTFS error, full JTFS error, MSS, per-path error of batch means)``.

    The first three are averaged over ``windows`` windows. The JTFS errors use the example's transform:
    per path, ``|S_p(est) - S_p(target)|^2 / |S_p(target)|^2`` averaged over the paths (what SCRAPL's
    per-path steps see), and the relative L2 distance over all coefficients (the full JTFS loss). The
    last is the per-path error between the windows' mean coefficients (``compare="batch_mean"``).
    """
    synth, processors = build((effect,), sub)
    renderer = ChunkedRenderer(synth)
    n = x.shape[-1]
    if n < 2 * sub:
        raise ValueError(f"the landscape needs at least two sub-sequences of signal ({2 * sub} samples), got {n}")
    starts = [(int((k + 0.5) * (n - 2 * sub) / windows) + sub) // 1024 * 1024 for k in range(windows)]
    jtfs = JTFSTransform(sub, **(jtfs_config or JTFS))
    mss = build_loss("mss")

    def estimate_windows(rate):
        theta = theta_of(processors, {effect: dict(lfo_rate=rate, lfo_phase=0.0)}, true)
        out = []
        for s in starts:
            renderer.reset_states()
            renderer.render_chunk(theta, x[..., s - sub:s])  # warm-up, as in a TBPTT sequence
            out.append(renderer.render_chunk(theta, x[..., s:s + sub])[0])
        return torch.stack(out)

    rows = []
    with torch.no_grad():
        # The target: the effect run from the signal's start, cut at the same windows.
        wet = synth.render(theta_of(processors, {}, true), x)
        target = torch.stack([wet[0, :, s:s + sub] for s in starts])
        s_target = jtfs(target[:, 0])
        for rate in rates or LANDSCAPE_RATES[effect]:
            est = estimate_windows(rate)
            s_est = jtfs(est[:, 0])
            per_path = ((s_est - s_target) ** 2).flatten(2).sum(2) / (s_target ** 2).flatten(2).sum(2).clamp_min(1e-30)
            full = ((s_est - s_target) ** 2).flatten(1).sum(1) / (s_target ** 2).flatten(1).sum(1)
            mss_value = torch.stack([mss(est[i:i + 1], target[i:i + 1]) for i in range(len(starts))])
            mean_est, mean_target = s_est.mean(0), s_target.mean(0)
            of_means = ((mean_est - mean_target) ** 2).flatten(1).sum(1) / (mean_target ** 2).flatten(1).sum(1).clamp_min(1e-30)
            rows.append((rate, float(per_path.mean()), float(full.mean()), float(mss_value.mean()), float(of_means.mean())))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sub", type=int, default=SUB, help="samples per sub-sequence (default 2^15)")
    parser.add_argument("--J", type=int, default=JTFS["J"], help="JTFS octaves (default 12)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--effects", default="phaser", help="phaser, tremolo, or tremolo,phaser (a chain)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32,
                        help="sequences per step (default 32: with 16 the rates wander further)")
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="seeds the shuffling, the LFO phases and SCRAPL's draws")
    parser.add_argument("--source_seed", type=int, default=0, help="seeds the source's noise bursts and drums")
    parser.add_argument("--true", default=None,
                        help="true values to override, e.g. phaser.lfo_rate=1.5,phaser.lfo_depth=0.5")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--lr_end", type=float, default=None, help="decay the learning rate linearly to this")
    parser.add_argument("--average_tail", type=float, default=0.0,
                        help="report the mean of the iterates over this fraction of the last steps")
    parser.add_argument("--jtfs_steps", type=int, default=5, help="steps of the full JTFS (default 5: its time)")
    parser.add_argument("--losses", default="scrapl,jtfs,mss")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--landscape", choices=("tremolo", "phaser"), default=None)
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--rates", default=None, help="comma-separated rates for --landscape (default: a grid)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    jtfs_config = dict(JTFS, J=args.J)
    true_values = with_true(args.true)
    effects = tuple(args.effects.split(","))
    if not set(effects) <= set(TRUE):
        raise SystemExit(f"--effects: choose among {sorted(TRUE)}, got {args.effects!r}")
    x = music_like_source(args.seconds, args.source_seed)
    if args.landscape:
        rates = [float(r) for r in args.rates.split(",")] if args.rates else None
        print(f"{args.landscape} alone, true rate {true_values[args.landscape]['lfo_rate']} Hz, start "
              f"{START[args.landscape]['lfo_rate']} Hz; losses averaged over {args.windows} windows of {args.sub} samples")
        print(f"{'rate':>6} {'JTFS per path':>14} {'JTFS full':>10} {'MSS':>8} {'of batch means':>15}")
        for rate, per_path, full, mss_value, of_means in landscape(args.landscape, x, args.windows, rates, args.sub,
                                                                   jtfs_config, true_values):
            print(f"{rate:6.2f} {per_path:14.4f} {full:10.4f} {mss_value:8.4f} {of_means:15.5f}")
        return 0
    synth, processors = build(effects, args.sub)
    with torch.no_grad():
        y = synth.render(theta_of(processors, {}, true_values), x)
    theta0 = theta_of(processors, START, true_values)
    labels = synth.layout.labels()
    trainable = [i for i, label in enumerate(labels) if "lfo_rate" in label or "lfo_depth" in label]
    phases = [i for i, label in enumerate(labels) if "lfo_phase" in label]
    specs = {"scrapl": {"class_path": "scrapl", "init_args": dict(shape=None, **jtfs_config, **COMPARE, grad_mult=1.0e8)},
             "jtfs": {"class_path": "jtfs", "init_args": dict(shape=args.sub, **jtfs_config, **COMPARE)},
             "mss": "mss"}
    print(f"{args.seconds:.0f} s of audio through {' -> '.join(effects)}, sequences of 3 x {args.sub} samples, "
          f"{args.batch} per step, LFO phases drawn per sequence; truth: "
          f"{ {n: {k: true_values[n][k] for k in ('lfo_rate', 'lfo_depth')} for n in effects} }; "
          f"start: {report(processors, theta0, true_values)}")
    for name in args.losses.split(","):
        t0 = time.perf_counter()
        steps = args.max_steps if name != "jtfs" else min(args.jtfs_steps, args.max_steps or args.jtfs_steps)
        result = tbptt_optimize(synth, x, y, specs[name], theta0, sub_length=args.sub, num_sub=3, hop=args.sub // 4,
                                batch_size=args.batch, trainable=trainable, nuisance=phases, lr=args.lr,
                                lr_end=args.lr_end, average_tail=args.average_tail, epochs=args.epochs,
                                max_steps=steps, seed=args.seed)
        errors = report(processors, result.theta, true_values)
        cells = ", ".join(f"{k} {v:.3g} ({e:.1f} %)" for k, (v, e) in errors.items())
        print(f"{name:7s} {result.steps} steps, {time.perf_counter() - t0:.0f} s: {cells}")
    if args.memory:
        from scrapl_graph.train.memory import measure_peak_memory

        for mode in ("tbptt", "direct"):
            m = measure_peak_memory(args.seconds, mode)
            print(f"peak memory beyond the signal, {mode}: {m['peak_mib']:.0f} MiB ({m['elapsed_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
