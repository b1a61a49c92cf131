"""The ``scrapl-graph`` command.

Subcommands: ``demo`` (the default: sound matching on a built-in target),
``warmup`` (theta-IS path probabilities for a graph and loss config),
``bench`` (side-by-side timings), ``jtfs`` (inspect the JTFS of a built-in
signal) and ``drums`` (the drum decay experiment,
:mod:`scrapl_graph.experiments.drum_decay`); ``fit``, ``validate``, ``test``
``reproduce`` and ``step-times`` belong to the training layer. Bad arguments or files give one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import time
from typing import List, Optional

import torch

from . import allocator

log = logging.getLogger(__name__)


class UsageError(Exception):
    """A bad argument or file: reported on one line of stderr with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message):
        raise UsageError(message)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def test_signal(n: int, sample_rate: float) -> torch.Tensor:
    """A built-in test signal: an amplitude-modulated exponential chirp over a faint noise floor."""
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0, octaves_per_second, am_hz = 256.0, 2.0, 4.0
    phase = 2 * torch.pi * f0 * (2 ** (octaves_per_second * t) - 1) / (octaves_per_second * torch.log(torch.tensor(2.0)))
    envelope = 0.5 * (1 + torch.sin(2 * torch.pi * am_hz * t))
    noise = 0.01 * torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return (envelope * torch.sin(phase) + noise).float()


# ----------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, format_table, run_demo

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    cfg = DemoConfig(out_dir=args.out, n=args.n, sample_rate=args.sample_rate, am_hz=args.am, fm_oct=args.fm,
                     max_shift=args.max_shift, J=args.J, steps=args.steps, jtfs_steps=args.jtfs_steps,
                     methods=methods, warmup=not args.no_warmup, seed=args.seed, device=args.device,
                     progress=not args.no_progress)
    try:
        cfg.validate()
    except ValueError as err:
        raise UsageError(str(err))
    print(f"Sound matching on {cfg.device}: {', '.join(methods)}; outputs in {os.path.abspath(cfg.out_dir)}",
          flush=True)
    results = run_demo(cfg)
    print(format_table(cfg, results))
    print(f"wrote target.wav, estimate_<method>.wav, loss_curves.png, "
          f"{'path_probs.png, ' if 'scrapl' in methods else ''}results.json")
    return 0


# --------------------------------------------------------------------------- warmup
def cmd_warmup(args: argparse.Namespace) -> int:
    from .config import load_run_config
    from .losses import scrapl_term_of

    run = load_run_config(args.config)
    synth, loss = run["synth"], scrapl_term_of(run["loss"])  # SCRAPL alone or the SCRAPL term of a LossSum
    if loss is None:
        raise UsageError(f"{args.config}: loss must be a SCRAPL loss (or a LossSum with a SCRAPL term) for a warmup, "
                         f"got {type(run['loss']).__name__}")
    device = torch.device(args.device)
    synth, loss = synth.to(device), loss.to(device)
    theta = (run["theta_init"] if run["theta_init"] is not None else torch.zeros(1, synth.n_theta)).to(device)
    columns = run["trainable"] if run["trainable"] is not None else list(range(synth.n_theta))
    if loss.n_theta != len(columns):
        raise UsageError(f"{args.config}: the loss has n_theta={loss.n_theta} but {len(columns)} theta columns are "
                         f"trainable; set loss init_args n_theta: {len(columns)}")
    if args.target is not None:
        target = _read_wav(args.target, synth.num_samples).to(device)
    elif run["target_theta"] is not None:
        with torch.no_grad():
            target = synth(run["target_theta"].to(device))
    else:
        raise UsageError(f"{args.config}: give target_theta in the config or --target WAV")
    index = torch.tensor(columns, device=device)
    trained = theta[:, index].clone().requires_grad_()

    def synth_fn(values):
        full = theta.clone()
        full[:, index] = values
        return synth(full)

    start = time.perf_counter()
    loss.warmup_lc_hvp(theta_fn=lambda x: trained, synth_fn=synth_fn, theta_fn_kwargs={"x": target},
                       params=[trained], start_path_idx=args.start, end_path_idx=args.end, save_dir=args.out,
                       n_iter=args.n_iter, progress=not args.no_progress)
    done = sorted(int(f[5:-3]) for f in os.listdir(args.out) if f.startswith("vals_") and f.endswith(".pt"))
    print(f"warmup of paths [{args.start}, {args.end if args.end is not None else loss.n_paths}) in "
          f"{time.perf_counter() - start:.1f} s; {len(done)} of {loss.n_paths} paths done in {args.out}")
    probs = os.path.join(args.out, "probs.pt")
    if os.path.exists(probs):
        print(f"path probabilities: {probs} (load with SCRAPLLoss(..., probs_path=...))")
        if args.plot:
            loss.plot_probs(os.path.join(args.out, "path_probs.png"), sample_rate=args.sample_rate)
    return 0


def _read_wav(path: str, num_samples: int) -> torch.Tensor:
    from scipy.io import wavfile

    if not os.path.isfile(path):
        raise UsageError(f"target file {path!r} does not exist")
    try:
        _, data = wavfile.read(path)
    except Exception as err:
        raise UsageError(f"cannot read {path!r} as WAV: {err}")
    audio = torch.as_tensor(data).double()
    if data.dtype.kind == "i":
        audio = audio / float(2 ** (8 * data.dtype.itemsize - 1))
    audio = audio.T if audio.ndim == 2 else audio[None]
    if audio.shape[-1] != num_samples:
        raise UsageError(f"{path}: {audio.shape[-1]} samples, the graph renders {num_samples}")
    return audio.float()[None]


# ---------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available")
    result = bench.run(batch=args.batch, n=args.n, device=args.device, path_stride=args.path_stride,
                       repeats=args.repeats, full_tree=not args.no_full_tree, reference=not args.no_reference,
                       reference_full_tree=args.reference_full_tree, memory_toy=not args.no_memory)
    print(result.table())
    if args.cost_model:
        from .bench.cost import cost_table

        print()
        print(cost_table(args.n, args.batch, args.device))
    if args.learnable:
        from .bench.learnable import learnable_overhead

        print("\n" + learnable_overhead(args.n, args.batch, args.device).describe())
    if args.scaling:
        from .bench.scaling import scaling_rows, scaling_table

        print()
        print(scaling_table(scaling_rows(device=args.device, memory=not args.no_memory)))
    return 0


# ----------------------------------------------------------------------------- jtfs
def cmd_jtfs(args: argparse.Namespace) -> int:
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


# --------------------------------------------------------------------------- parser
def _number(cast, minimum, inclusive: bool, what: str):
    """An argparse type: ``cast(text)``, checked against ``minimum``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


positive_int = _number(int, 1, True, "a positive integer")
nonnegative_int = _number(int, 0, True, "an integer >= 0")
positive_float = _number(float, 0.0, False, "a positive number")


_GLOBAL_FLAGS = ("-v", "--verbose", "--tune-malloc")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scrapl-graph", description="SCRAPL scattering losses for GRAFX audio graphs. "
                     "Without a subcommand, runs the demo. Training of parameter predictors: "
                     "scrapl-graph fit|validate|test --config FILE (LightningCLI; see fit --help).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="keep freed memory for reuse in glibc's malloc (faster JTFS steps on CPU; also "
                        "SCRAPL_GRAPH_TUNE_MALLOC=1)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for add in (_add_demo, _add_warmup, _add_bench, _add_jtfs):
        add(sub)
    return parser


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="sound-match a chirplet through a GRAFX graph with SCRAPL, MSS and JTFS",
                          description="Recover a chirplet's AM and FM rates, rendered through a GRAFX graph with "
                          "random time shifts, with SCRAPL (theta-IS warmup, P-Adam, P-SAGA), auraloss MSS and the "
                          "full JTFS; print a table and write WAVs, plots and results.json.")
    demo.add_argument("--out", default="scrapl_demo", help="output folder (default scrapl_demo)")
    demo.add_argument("--methods", default="scrapl,mss,jtfs", help="comma-separated subset of scrapl,mss,jtfs")
    demo.add_argument("--am", type=positive_float, default=3.2, help="target theta_AM in Hz, in (2, 8) (default 3.2)")
    demo.add_argument("--fm", type=positive_float, default=3.6, help="target theta_FM in oct/s, in (2, 4) (default 3.6)")
    demo.add_argument("--steps", type=positive_int, default=300, help="steps for SCRAPL and MSS (default 300)")
    demo.add_argument("--jtfs-steps", type=positive_int, default=30, help="steps for the full JTFS (default 30)")
    demo.add_argument("--n", type=positive_int, default=8192, help="signal length (default 8192)")
    demo.add_argument("--sample-rate", type=positive_float, default=8192.0, help="Hz (default 8192)")
    demo.add_argument("--J", type=positive_int, default=10, help="JTFS octaves, 2**J <= n (default 10)")
    demo.add_argument("--max-shift", type=nonnegative_int, default=1024, help="random shift in samples (default 1024)")
    demo.add_argument("--no-warmup", action="store_true", help="SCRAPL with uniform path sampling")
    demo.add_argument("--seed", type=nonnegative_int, default=0)
    demo.add_argument("--device", choices=["cpu", "cuda"], default=default_device())
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=cmd_demo)


def _add_warmup(sub) -> None:
    warmup = sub.add_parser("warmup", help="theta-IS path probabilities for a graph and loss config",
                            description="Run the theta-IS warmup of a SCRAPL loss on a GRAFX graph described by a "
                            "YAML/JSON run config (keys graph, loss, target_theta, theta_init, trainable). Values "
                            "are saved per path in OUT (resumable; shard with --start/--end); probs.pt is written "
                            "when every path is done.")
    warmup.add_argument("config", help="run config (.yaml, .yml or .json)")
    warmup.add_argument("--out", default="scrapl_warmup", help="warmup folder (default scrapl_warmup)")
    warmup.add_argument("--target", help="target WAV (default: render target_theta from the config)")
    warmup.add_argument("--start", type=nonnegative_int, default=0, help="first path of this shard")
    warmup.add_argument("--end", type=positive_int, default=None, help="end (exclusive) of this shard")
    warmup.add_argument("--n-iter", type=positive_int, default=20, help="power-iteration steps (default 20)")
    warmup.add_argument("--sample-rate", type=positive_float, default=8192.0, help="for the plot (default 8192)")
    warmup.add_argument("--plot", action="store_true", help="also write path_probs.png")
    warmup.add_argument("--device", choices=["cpu", "cuda"], default=default_device())
    warmup.add_argument("--no-progress", action="store_true")
    warmup.set_defaults(func=cmd_warmup)


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="side-by-side timings: ours, auraloss MSS, the reference package if installed")
    bench.add_argument("--batch", type=positive_int, default=4)
    bench.add_argument("--n", type=positive_int, default=32768)
    bench.add_argument("--device", choices=["cpu", "cuda"], default=default_device())
    bench.add_argument("--path-stride", type=positive_int, default=7, help="time every k-th path (default 7)")
    bench.add_argument("--repeats", type=positive_int, default=2, help="timings per path, best kept (default 2)")
    bench.add_argument("--no-full-tree", action="store_true", help="skip the full-tree JTFS loss")
    bench.add_argument("--no-reference", action="store_true", help="skip the reference package even if installed")
    bench.add_argument("--reference-full-tree", action="store_true",
                       help="also time the reference's full JTFS (minutes, ~17 GB on a CPU)")
    bench.add_argument("--no-memory", action="store_true", help="skip the attached-model memory measurement")
    bench.add_argument("--cost-model", action="store_true",
                       help="also print the cost model of three paths: FFTs per stage, their floor, measured time")
    bench.add_argument("--learnable", action="store_true",
                       help="also time a single-path step with learnable filters beside the fixed transform")
    bench.add_argument("--scaling", action="store_true",
                       help="also time MSS and a SCRAPL step at batch 32 (N=32768) and at N=131072 (batch 4), per example")
    bench.set_defaults(func=cmd_bench)


def _add_jtfs(sub) -> None:
    jtfs = sub.add_parser("jtfs", help="the JTFS of a built-in test signal: path count, shapes, timings")
    jtfs.add_argument("--n", type=positive_int, default=32768, help="signal length (default 32768)")
    jtfs.add_argument("--sample-rate", type=positive_float, default=8192.0, help="sample rate in Hz (default 8192)")
    for name, default in (("J", 12), ("Q1", 8), ("Q2", 2), ("J_fr", 3), ("Q_fr", 2)):
        jtfs.add_argument(f"--{name}", type=positive_int, default=default, help=f"(default {default})")
    jtfs.add_argument("--paths", type=positive_int, default=15, help="paths to time one by one (default 15)")
    jtfs.add_argument("--device", choices=["cpu", "cuda"], default=default_device())
    jtfs.set_defaults(func=cmd_jtfs)


#: Subcommands handed to LightningCLI (the training layer, extra ``train``).
LIGHTNING_COMMANDS = ("fit", "validate", "test")


def run_lightning(argv: Optional[List[str]]) -> int:
    """``scrapl-graph fit|validate|test ...``: the training layer's command (see :mod:`scrapl_graph.lightning.cli`)."""
    try:
        from .lightning.cli import run
    except ImportError as err:
        raise UsageError(f"the training layer needs Lightning: pip install 'scrapl-graph[train]' ({err})") from None
    return run(argv)


def main(argv: Optional[List[str]] = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("reproduce", "step-times"):
        try:
            if argv[0] == "reproduce":
                from .lightning.reproduce import main as command
            else:
                from .lightning.step_times import main as command
        except ImportError as err:
            print(f"scrapl-graph {argv[0]}: error: needs Lightning: pip install 'scrapl-graph[train]' ({err})",
                  file=sys.stderr)
            return 2
        return command(argv[1:])
    if argv and argv[0] == "drums":
        from .experiments.drum_decay import main as drums

        return drums(argv[1:])
    if argv and argv[0] in LIGHTNING_COMMANDS:
        try:
            # From the command line LightningCLI reads sys.argv itself.
            return run_lightning(None if from_command_line else argv)
        except UsageError as err:
            print(f"scrapl-graph {argv[0]}: error: {err}", file=sys.stderr)
            return 2
    parser = build_parser()
    command = "scrapl-graph"
    try:
        commands = {"demo", "warmup", "bench", "jtfs"}
        if not any(a in commands for a in argv) and not any(a in ("-h", "--help") for a in argv):
            n_global = next((i for i, a in enumerate(argv) if a not in _GLOBAL_FLAGS), len(argv))
            argv = argv[:n_global] + ["demo"] + argv[n_global:]
        args = parser.parse_args(argv)
        command = f"scrapl-graph {args.command}"
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s:%(name)s:%(message)s")
        if args.tune_malloc:
            os.environ[allocator.ENV_VAR] = "1"  # worker processes of the bench inherit the choice
        allocator.tune_malloc_if_requested()
        return args.func(args)
    except (UsageError, ValueError, TypeError) as err:
        print(f"{command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
