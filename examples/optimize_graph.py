"""Recover a chirplet's AM and FM rates through an EQ and a reverb, with SCRAPL.

The GRAFX graph is

    in -> chirplet -> EQ -+-> reverb -> out
                          +-------------^   (dry + wet)

with our ``ChirpletSynth`` (an amplitude-modulated exponential chirp, SCRAPL
paper section 4.3) and GRAFX's ``ZeroPhaseFIREqualizer`` and
``STFTMaskedNoiseReverb``. A target is rendered from random AM / FM rates;
then ``optimize_graph`` fits theta_AM and theta_FM (and, with
``--optimize-effects``, the EQ and reverb parameters too) from the middle of
their ranges, with a SCRAPL loss, P-Adam, P-SAGA and plain SGD.

The chirplet is shifted in time by a new random amount (up to
``--max-shift`` samples) at every rendering, so target and estimate are
never aligned: the paper's "meso" setting. The same loop is then run with
the multi-scale spectral loss (MSS, Adam), whose gradient carries little
information about modulation rates under misalignment. Use
``--max-shift 0`` for the aligned setting, ``--no-mss`` to skip MSS.

The parameter error is the paper's: |sigmoid(theta) - sigmoid(theta_true)|,
the distance in the normalized range [0, 1], printed in per mille.

Run:  python examples/optimize_graph.py            (about 20 s on 2 CPU cores)
      python examples/optimize_graph.py --steps 20 --n 4096 --J 8   (smoke test)
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import torch

try:
    import scrapl_graph  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # GRAFX's spurious torchaudio version warning
    from grafx.data import GRAFX, NodeConfigs
    from grafx.processors import STFTMaskedNoiseReverb, ZeroPhaseFIREqualizer

from scrapl_graph.graph import GraphSynth
from scrapl_graph.losses import SCRAPLLoss, build_loss
from scrapl_graph.processors import ChirpletSynth
from scrapl_graph.train import optimize_graph


def build_synth(args, shift_seed: int) -> GraphSynth:
    """The chirplet -> EQ -> (dry + reverb) graph; ``shift_seed`` seeds the chirplet's random shifts."""
    graph = GRAFX(config=NodeConfigs(["chirplet", "eq", "reverb"]))
    inp, chirp, eq, reverb, out = (graph.add(t) for t in ("in", "chirplet", "eq", "reverb", "out"))
    for a, b in [(inp, chirp), (chirp, eq), (eq, reverb), (reverb, out), (eq, out)]:
        graph.connect(a, b)
    processors = {
        "chirplet": ChirpletSynth.from_preset(args.preset, sample_rate=args.sample_rate, num_samples=args.n,
                                              f0_hz=args.sample_rate / 16, max_shift=args.max_shift,
                                              seed=shift_seed),
        "eq": ZeroPhaseFIREqualizer(num_magnitude_bins=65),
        # GRAFX convolves at length n + ir_len - 1: 1025 keeps that FFT-friendly for n = 8192.
        "reverb": STFTMaskedNoiseReverb(ir_len=min(1025, args.n // 2 + 1), n_fft=128, hop_length=64,
                                        flashfftconv=False, max_input_len=args.n),
    }
    return GraphSynth(graph, processors, num_samples=args.n, num_channels=2)


def true_parameters(synth: GraphSynth, seed: int) -> torch.Tensor:
    """Random AM / FM rates (uniform positions in their ranges), a gentle EQ tilt and a short reverb."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.zeros(1, synth.n_theta)
    columns = {name: [i for i, label in enumerate(synth.layout.labels()) if label.startswith(name)]
               for name in ("chirplet", "eq", "reverb")}
    theta[0, columns["chirplet"]] = torch.logit(0.1 + 0.8 * torch.rand(2, generator=gen))
    eq = columns["eq"]
    theta[0, eq] = 0.6 * torch.sin(torch.linspace(0, torch.pi, len(eq)) + torch.rand((), generator=gen) * torch.pi)
    theta[0, columns["reverb"]] = -1.0 + 0.2 * torch.randn(len(columns["reverb"]), generator=gen)
    return theta


def rates(synth: GraphSynth, theta: torch.Tensor) -> str:
    am, fm = theta[0, 0:1], theta[0, 1:2]
    phys = synth.processors["chirplet"].physical(am, fm)
    return f"AM {phys['theta_am'].item():5.2f} Hz, FM {phys['theta_fm'].item():5.2f} oct/s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8192, help="signal length in samples (default 8192)")
    parser.add_argument("--sample-rate", type=float, default=8192.0, help="sample rate in Hz (default 8192)")
    parser.add_argument("--preset", default="fast_am_moderate_fm",
                        help="chirplet AM/FM ranges, a key of CHIRPLET_PRESETS (default fast_am_moderate_fm)")
    parser.add_argument("--max-shift", type=int, default=1024, help="random time shift in samples (default 1024)")
    parser.add_argument("--steps", type=int, default=300, help="gradient steps per loss (default 300)")
    parser.add_argument("--lr", type=float, default=0.1, help="start learning rate (default 0.1)")
    parser.add_argument("--lr-end", type=float, default=0.005, help="final learning rate, linear decay (default 0.005)")
    parser.add_argument("--J", type=int, default=10, help="JTFS octaves, 2**J <= n (default 10: AM rates down to 2 Hz)")
    parser.add_argument("--optimize-effects", action="store_true",
                        help="also optimize the EQ and reverb parameters (from flat / default values)")
    parser.add_argument("--no-mss", action="store_true", help="skip the MSS baseline")
    parser.add_argument("--seed", type=int, default=0, help="seed of the target parameters and the run (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: faster for these small signals)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s:%(name)s:%(message)s")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # the chirplet's Gaussian window underflows; denormals are slow on CPUs

    synth = build_synth(args, shift_seed=args.seed + 1)
    true_theta = true_parameters(synth, args.seed)
    with torch.no_grad():  # rendered once, with its own random shift
        target = build_synth(args, shift_seed=args.seed + 1000)(true_theta).to(args.device)

    theta_init = true_theta.clone()
    theta_init[:, :2] = 0.0  # AM and FM start in the middle of their ranges
    trainable = ["chirplet"]
    if args.optimize_effects:
        theta_init[:, 2:] = 0.0  # flat EQ, default reverb
        trainable = None
    print(f"graph: in -> chirplet -> EQ -> dry + reverb -> out; n_theta = {synth.n_theta}, "
          f"{args.n} samples at {args.sample_rate:g} Hz, random shifts up to {args.max_shift} samples")
    print(f"target: {rates(synth, true_theta)};  start: {rates(synth, theta_init)}")

    losses = {"SCRAPL": SCRAPLLoss(shape=args.n, J=args.J, Q1=8, Q2=2, J_fr=3, Q_fr=2)}
    if not args.no_mss:
        losses["MSS"] = build_loss("mss")
    print("parameter errors in per mille of each range: 1000 |sigmoid(theta) - sigmoid(theta_true)|")
    print(f"{'loss':8s} {'optimizer':16s} {'time':>7s} {'AM err':>8s} {'FM err':>8s}   estimate")
    for name, loss in losses.items():
        start = time.perf_counter()
        result = optimize_graph(synth, target, loss, theta_init, trainable=trainable, error_columns="chirplet",
                                steps=args.steps, lr=args.lr, lr_end=args.lr_end, true_theta=true_theta,
                                device=args.device, progress=args.progress, seed=args.seed)
        seconds = time.perf_counter() - start
        am_err, fm_err = (1000 * e for e in result.param_error_columns)
        print(f"{name:8s} {result.optimizer_name:16s} {seconds:6.1f}s {am_err:8.1f} {fm_err:8.1f}   "
              f"{rates(synth, result.theta.cpu())}")
    print(f"start: {1000 * result.initial_param_error:.1f} per mille on average")
    return 0


if __name__ == "__main__":
    sys.exit(main())
