"""One optimization loop, three losses: MSS, full-tree JTFS and SCRAPL on a misaligned chirplet.

The GRAFX graph ``in -> chirplet -> EQ -> out`` renders an
amplitude-modulated exponential chirp (SCRAPL paper, section 4.3) through
GRAFX's ``ZeroPhaseFIREqualizer``. For each target (random AM / FM rates),
``optimize_graph`` fits theta_AM and theta_FM from the middle of their
ranges with each loss in turn, swapping only the ``loss`` argument:

- ``mss``: auraloss multi-resolution STFT (6 resolutions, 64..2048), Adam;
- ``jtfs``: the full-tree JTFS distance (every path at every step), Adam;
- ``scrapl``: one random JTFS path per step, P-Adam + P-SAGA, plain SGD.

Every rendering shifts the chirplet by a new random number of samples (up to
``--max-shift``), so target and estimate are never aligned. The table gives
the parameter error |sigmoid(theta) - sigmoid(theta_true)| in per mille of
each range (mean over the targets) and the optimization time. A full JTFS
step costs about as much as 50 to 100 SCRAPL steps here, so the JTFS loss
gets fewer steps by default (``--jtfs-steps``); give it ``--jtfs-steps 300``
to compare at equal steps (several minutes).

Run:  python examples/swap_losses.py          (about a minute on 2 CPU cores)
      python examples/swap_losses.py --steps 5 --jtfs-steps 2 --n 4096 --J 8   (smoke test)
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
    from grafx.processors import ZeroPhaseFIREqualizer

from scrapl_graph.graph import GraphSynth
from scrapl_graph.processors import ChirpletSynth
from scrapl_graph.train import optimize_graph


def build_synth(args, shift_seed: int) -> GraphSynth:
    processors = {
        "chirplet": ChirpletSynth.from_preset(args.preset, sample_rate=args.sample_rate, num_samples=args.n,
                                              f0_hz=args.sample_rate / 16, max_shift=args.max_shift,
                                              seed=shift_seed),
        "eq": ZeroPhaseFIREqualizer(num_magnitude_bins=65),
    }
    return GraphSynth.chain(processors, num_samples=args.n)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8192, help="signal length in samples (default 8192)")
    parser.add_argument("--sample-rate", type=float, default=8192.0, help="sample rate in Hz (default 8192)")
    parser.add_argument("--preset", default="fast_am_moderate_fm", help="chirplet AM/FM ranges (default fast_am_moderate_fm)")
    parser.add_argument("--max-shift", type=int, default=1024, help="random time shift in samples (default 1024)")
    parser.add_argument("--losses", default="mss,jtfs,scrapl", help="comma-separated losses (default mss,jtfs,scrapl)")
    parser.add_argument("--targets", type=int, default=1, help="number of random targets (default 1)")
    parser.add_argument("--steps", type=int, default=300, help="steps for MSS and SCRAPL (default 300)")
    parser.add_argument("--jtfs-steps", type=int, default=30, help="steps for the full JTFS (default 30)")
    parser.add_argument("--lr", type=float, default=0.1, help="start learning rate (default 0.1)")
    parser.add_argument("--lr-end", type=float, default=0.005, help="final learning rate, linear decay (default 0.005)")
    parser.add_argument("--J", type=int, default=10, help="JTFS octaves for JTFS and SCRAPL, 2**J <= n (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first target (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s:%(name)s:%(message)s")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # the chirplet's Gaussian window underflows; denormals are slow on CPUs
    names = [name.strip() for name in args.losses.split(",") if name.strip()]

    jtfs_config = {"shape": args.n, "J": args.J, "Q1": 8, "Q2": 2, "J_fr": 3, "Q_fr": 2}
    configs = {  # registry configs: the loop only sees a name or a {"class_path", "init_args"} mapping
        "mss": "mss",
        "jtfs": {"class_path": "jtfs", "init_args": jtfs_config},
        "scrapl": {"class_path": "scrapl", "init_args": jtfs_config},
    }
    unknown = [name for name in names if name not in configs]
    if unknown:
        parser.error(f"unknown loss(es) {unknown}; choose from {sorted(configs)}")

    synth = build_synth(args, shift_seed=args.seed + 1)
    errors = {name: [] for name in names}
    seconds = {name: 0.0 for name in names}
    start_errors = []
    for t in range(args.targets):
        gen = torch.Generator().manual_seed(args.seed + t)
        true_theta = torch.zeros(1, synth.n_theta)
        true_theta[0, :2] = torch.logit(0.1 + 0.8 * torch.rand(2, generator=gen))
        true_theta[0, 2:] = 0.5 * torch.sin(torch.linspace(0, torch.pi, synth.n_theta - 2))  # a mild EQ bump
        with torch.no_grad():
            target = build_synth(args, shift_seed=args.seed + 1000 + t)(true_theta).to(args.device)
        theta_init = true_theta.clone()
        theta_init[:, :2] = 0.0
        for name in names:
            start = time.perf_counter()
            result = optimize_graph(synth, target, configs[name], theta_init, trainable="chirplet",
                                    steps=args.jtfs_steps if name == "jtfs" else args.steps, lr=args.lr,
                                    lr_end=args.lr_end, true_theta=true_theta, device=args.device,
                                    progress=args.progress, seed=args.seed + t)
            seconds[name] += time.perf_counter() - start
            errors[name].append(result.param_error_columns)
        start_errors.append(result.initial_param_error)

    print(f"chirplet -> EQ, {args.n} samples at {args.sample_rate:g} Hz, random shifts up to {args.max_shift} "
          f"samples; {args.targets} target(s); parameter error in per mille (start: "
          f"{1000 * sum(start_errors) / len(start_errors):.0f})")
    print(f"{'loss':8s} {'optimizer':9s} {'steps':>5s} {'time':>8s} {'ms/step':>8s} {'AM err':>7s} {'FM err':>7s} {'mean':>6s}")
    for name in names:
        am, fm = (1000 * sum(e[i] for e in errors[name]) / args.targets for i in (0, 1))
        steps = args.jtfs_steps if name == "jtfs" else args.steps
        optimizer = "SGD" if name == "scrapl" else "Adam"
        print(f"{name:8s} {optimizer:9s} {steps:5d} {seconds[name]:7.1f}s "
              f"{1000 * seconds[name] / (steps * args.targets):8.1f} {am:7.0f} {fm:7.0f} {(am + fm) / 2:6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
