"""The ``scrapl-graph`` command: ``demo`` (the default job) and ``bench``."""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from typing import List, Optional

import torch

log = logging.getLogger(__name__)


class UsageError(Exception):
    """A bad argument: reported on one line of stderr with exit code 2."""


def test_signal(n: int, sample_rate: float) -> torch.Tensor:
    """A built-in test signal: an amplitude-modulated exponential chirp over a faint noise floor."""
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0, octaves_per_second, am_hz = 256.0, 2.0, 4.0
    phase = 2 * torch.pi * f0 * (2 ** (octaves_per_second * t) - 1) / (octaves_per_second * torch.log(torch.tensor(2.0)))
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * am_hz * t))
    noise = 0.01 * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return (envelope * torch.sin(phase) + noise).float()


def cmd_demo(args: argparse.Namespace) -> int:
    from .jtfs import JTFS

    if args.n < 2**args.J:
        raise UsageError(f"--n {args.n} is shorter than 2**J = {2 ** args.J}")
    device = torch.device(args.device)
    start = time.perf_counter()
    jtfs = JTFS(args.n, args.J, args.Q1, args.Q2, args.J_fr, args.Q_fr).to(device)
    build_s = time.perf_counter() - start
    x = test_signal(args.n, args.sample_rate).to(device)[None]
    print(f"JTFS of a built-in test signal (AM chirp, {args.n} samples at {args.sample_rate:g} Hz) on {device}")
    print(f"  config: J={args.J}, Q1={args.Q1}, Q2={args.Q2}, J_fr={args.J_fr}, Q_fr={args.Q_fr}; built in {build_s:.2f} s")
    print(f"  second-order paths: {jtfs.n_paths}; first-order paths: {jtfs.n_first_order}")
    with torch.no_grad():
        S1 = jtfs.first_order(x)
        start = time.perf_counter()
        S = jtfs(x)
        full_s = time.perf_counter() - start
        times = []
        for idx in range(0, jtfs.n_paths, max(1, jtfs.n_paths // args.paths)):
            start = time.perf_counter()
            jtfs.path(x, idx)
            times.append(time.perf_counter() - start)
    print(f"  coefficients: second order {tuple(S.shape)} (batch, path, F', T'); first order {tuple(S1.shape)}")
    print(f"  time: full tree {1000 * full_s:.1f} ms; one path {1000 * statistics.median(times):.1f} ms "
          f"(median over {len(times)} paths, forward only)")
    strongest = torch.topk(S.flatten(2).norm(dim=-1)[0], 5).indices.tolist()
    print("  most energetic paths (idx: rate Hz, scale cycles/octave, spin):")
    for idx in strongest:
        p = jtfs.paths[idx]
        print(f"    {idx:4d}: {p.rate_hz(args.sample_rate):8.2f} Hz, {p.scale:5.2f} c/o, spin {p.spin:+d}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available")
    result = bench.run(batch=args.batch, n=args.n, device=args.device, path_stride=args.path_stride,
                       repeats=args.repeats, full_tree=not args.no_full_tree, reference=not args.no_reference,
                       reference_full_tree=args.reference_full_tree, memory_toy=not args.no_memory)
    print(result.table())
    return 0


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scrapl-graph", description="SCRAPL scattering losses for GRAFX audio graphs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="the default job: JTFS of a built-in test signal (path count, shapes, timings)")
    demo.add_argument("--n", type=positive_int, default=32768, help="signal length (default 32768)")
    demo.add_argument("--sample-rate", type=float, default=8192.0, help="sample rate in Hz (default 8192)")
    for name, default in (("J", 12), ("Q1", 8), ("Q2", 2), ("J_fr", 3), ("Q_fr", 2)):
        demo.add_argument(f"--{name}", type=positive_int, default=default, help=f"(default {default})")
    demo.add_argument("--paths", type=positive_int, default=15, help="paths to time one by one (default 15)")
    demo.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="side-by-side timings: ours, auraloss MSS, the reference package if installed")
    bench.add_argument("--batch", type=positive_int, default=4)
    bench.add_argument("--n", type=positive_int, default=32768)
    bench.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    bench.add_argument("--path-stride", type=positive_int, default=7, help="time every k-th path (default 7)")
    bench.add_argument("--repeats", type=positive_int, default=2, help="timings per path, best kept (default 2)")
    bench.add_argument("--no-full-tree", action="store_true", help="skip the full-tree JTFS loss")
    bench.add_argument("--no-reference", action="store_true", help="skip the reference package even if installed")
    bench.add_argument("--reference-full-tree", action="store_true",
                       help="also time the reference's full JTFS (minutes, ~17 GB on a CPU)")
    bench.add_argument("--no-memory", action="store_true", help="skip the attached-model memory measurement")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s:%(name)s:%(message)s")
    if args.command is None:
        args = parser.parse_args(["demo"] + (argv if argv is not None else sys.argv[1:]))
    try:
        return args.func(args)
    except (UsageError, ValueError, TypeError) as err:
        print(f"scrapl-graph {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
