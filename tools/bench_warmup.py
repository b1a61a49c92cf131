"""Time the theta-IS warmup of the reference package's README example, ours beside the reference's.

Run with an environment that has both packages (``scrapl`` and ``scrapl_graph``)::

    .venv-ref/bin/python tools/bench_warmup.py

Both warmups see the same encoder, decoder and batch (7 paths, n_theta=3,
batch 4, 8096 samples). Prints each timing, their ratio, and how far apart the
two sets of curvature values and probabilities are. Without the reference
package only ours is timed.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time

import torch
from torch import nn

from scrapl_graph import SCRAPLLoss


def make_problem(seed: int = 42):
    torch.manual_seed(seed)
    bs, n_ch, n_samples, n_theta = 4, 1, 8096, 3
    encoder = nn.Sequential(nn.Linear(n_samples, n_theta), nn.PReLU(), nn.Linear(n_theta, n_theta), nn.Sigmoid())
    decoder = nn.Sequential(nn.Linear(n_theta, n_theta), nn.PReLU(), nn.Linear(n_theta, n_samples), nn.Tanh())
    theta_fn = lambda x: encoder(x.squeeze(1))
    synth_fn = lambda theta: decoder(theta).unsqueeze(1)
    theta_fn_kwargs = [{"x": torch.rand((bs, n_ch, n_samples))}]
    params = list(encoder.parameters())
    config = dict(shape=n_samples, J=3, Q1=1, Q2=1, J_fr=2, Q_fr=1, n_theta=n_theta)
    return theta_fn, synth_fn, theta_fn_kwargs, params, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-iter", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1, help="time ours this many times (best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    theta_fn, synth_fn, kwargs, params, config = make_problem()

    ours = SCRAPLLoss(**config)
    best = float("inf")
    for _ in range(args.repeats):
        ours.clear()
        t0 = time.perf_counter()
        vals = ours.warmup_lc_hvp(theta_fn, synth_fn, kwargs, params, save_dir=None, n_iter=args.n_iter,
                                  progress=False)
        best = min(best, time.perf_counter() - t0)
    ours_vals = torch.cat([vals[i] for i in sorted(vals)])
    print(f"scrapl_graph warmup_lc_hvp: {best:.2f} s  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")

    try:
        import scrapl  # noqa: F401  (puts the reference's bundled modules on sys.path)
        from scrapl import SCRAPLLoss as ReferenceLoss
    except ImportError as err:
        print(f"reference package not importable ({err}); only ours was timed")
        return
    logging.getLogger("scrapl").setLevel(logging.WARNING)
    logging.getLogger("scrapl.scrapl_loss").setLevel(logging.WARNING)
    reference = ReferenceLoss(**config)
    with tempfile.TemporaryDirectory() as save_dir:
        t0 = time.perf_counter()
        reference.warmup_lc_hvp(theta_fn, synth_fn, kwargs, params, save_dir=save_dir, n_iter=args.n_iter)
        ref_time = time.perf_counter() - t0
        ref_vals = torch.cat([torch.load(f"{save_dir}/vals_{i}.pt") for i in range(reference.n_paths)])
    print(f"\nreference scrapl warmup_lc_hvp: {ref_time:.2f} s")
    print(f"speed-up: {ref_time / best:.1f}x")
    rel = ((ours_vals - ref_vals).abs() / ref_vals.abs().clamp_min(1e-30)).max().item()
    print(f"curvature values: max relative difference {rel:.2e}")
    print(f"values (path x theta), ours:\n{ours_vals}\nreference:\n{ref_vals}")
    print(f"probabilities: max |ours - reference| {(ours.probs - reference.probs).abs().max().item():.2e}")
    print(f"ours:      {[round(p, 4) for p in ours.probs.tolist()]}")
    print(f"reference: {[round(p, 4) for p in reference.probs.tolist()]}")


if __name__ == "__main__":
    main()
