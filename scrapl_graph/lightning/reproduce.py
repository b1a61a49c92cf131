"""Reproduction tables: several losses over several seeds on one task, as the paper reports them.

A reproduction config (YAML) names the task's training config, the seeds and
the variants (each a list of LightningCLI arguments added to the task's)::

    task: examples/configs/granular_cpu.yaml
    seeds: [0, 1, 2]
    variants:
      scrapl: [--config, examples/configs/losses/scrapl_granular_cpu.yaml]
      mss_random: [--model.loss, mss_random]

Every (variant, seed) runs ``scrapl-graph fit`` then ``scrapl-graph test``
on the last checkpoint in a process of its own, under ``<out>/<variant>/seed_<s>``.
The results are ``results.md`` and ``results.csv`` (test theta L1 in permille
per parameter and mean, audio distances, wall-clock time, the median
training step time and the encoder's trainable weights: mean and 95%
confidence interval over seeds, Student's t) and ``curves.png`` (validation
theta L1 against steps and against wall-clock seconds, theta-IS warmup
included: the paper's figure 2).
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import math
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..train.stats import confidence_interval

log = logging.getLogger(__name__)


def load_spec(path: str) -> Dict:
    """The reproduction config, checked.

    Raises:
        ValueError: for a missing file or keys, or variants that are not lists of arguments.
    """
    from ..io import load_config

    spec = load_config(path)
    if not isinstance(spec, Mapping) or not {"task", "seeds", "variants"} <= set(spec):
        raise ValueError(f"{path}: a reproduction config needs task, seeds and variants")
    variants = spec["variants"]
    if not isinstance(variants, Mapping) or not all(isinstance(v, list) for v in variants.values()):
        raise ValueError(f"{path}: variants must map names to lists of command-line arguments")
    return dict(spec)


def _cli(args: List[str]) -> None:
    command = [sys.executable, "-m", "scrapl_graph.cli", *args]
    log.info("running %s", " ".join(command))
    subprocess.run(command, check=True)


def run_one(task: str, variant_args: Sequence[str], seed: int, folder: str) -> None:
    """Fit and test one variant with one seed in ``folder`` (skipped when its results exist)."""
    if glob.glob(os.path.join(folder, "**", "test_results.json"), recursive=True):
        log.info("%s: results found, skipped", folder)
        return
    common = ["--config", task, *variant_args, f"--seed_everything={seed}",
              f"--trainer.logger.init_args.save_dir={folder}"]  # the task config names a CSVLogger
    _cli(["fit", *common, f"--trainer.default_root_dir={folder}"])
    checkpoints = sorted(glob.glob(os.path.join(folder, "**", "checkpoints", "*.ckpt"), recursive=True),
                         key=os.path.getmtime)
    if not checkpoints:
        raise RuntimeError(f"{folder}: fit wrote no checkpoint")
    _cli(["test", *common, f"--ckpt_path={checkpoints[-1]}", f"--trainer.default_root_dir={folder}",
          "--trainer.logger.init_args.version=test"])


def _run_results(folder: str) -> Tuple[Dict[str, float], List[Dict[str, str]]]:
    tests = glob.glob(os.path.join(folder, "**", "test_results.json"), recursive=True)
    if not tests:
        raise RuntimeError(f"{folder}: no test_results.json")
    with open(tests[0]) as f:
        results = json.load(f)
    rows: List[Dict[str, str]] = []
    clock: Dict[int, float] = {}  # training step -> seconds of fitting when it was logged
    for metrics in glob.glob(os.path.join(folder, "**", "metrics.csv"), recursive=True):
        with open(metrics) as f:
            for r in csv.DictReader(f):
                if r.get("val/theta_l1"):
                    rows.append(r)
                if r.get("time/elapsed_s") and r.get("step"):
                    clock[int(r["step"])] = float(r["time/elapsed_s"])
    elapsed = [float(r["val/elapsed_s"]) for r in rows if r.get("val/elapsed_s")]
    results["wall_clock_s"] = max(elapsed) if elapsed else math.nan
    results["step_ms"] = step_time_ms(clock)
    return results, rows


def step_time_ms(clock: Mapping[int, float]) -> float:
    """Median time between consecutive logged training steps (ms): warmup and validation gaps left out."""
    gaps = [1000 * (clock[s + 1] - clock[s]) for s in clock if s + 1 in clock]
    return statistics.median(gaps) if gaps else math.nan


def summarize(out: str, variants: Sequence[str], seeds: Sequence[int]) -> str:
    """Write results.md, results.csv and curves.png under ``out``; return the markdown table."""
    table, curves = {}, {}
    for name in variants:
        runs = [_run_results(os.path.join(out, name, f"seed_{s}")) for s in seeds]
        keys = sorted(k for k in runs[0][0]
                      if k.startswith("theta_l1") or k in ("jtfs", "mss", "wall_clock_s", "step_ms", "encoder_weights"))
        table[name] = {k: confidence_interval([r[0][k] for r in runs if k in r[0]]) for k in keys}
        curves[name] = [r[1] for r in runs]
    columns = sorted({k for row in table.values() for k in row})
    lines = ["| variant | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        cells = [f"{row[c][0]:.4g} ± {row[c][1]:.2g}" if c in row else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    markdown = (f"Test metrics over seeds {list(seeds)}: mean ± 95% CI (theta L1 in permille of each range).\n\n"
                + "\n".join(lines) + "\n")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "metric", "mean", "ci95"])
        for name, row in table.items():
            writer.writerows([name, k, m, h] for k, (m, h) in row.items())
    _plot(curves, os.path.join(out, "curves.png"))
    return markdown


def _plot(curves: Mapping[str, List[List[Dict[str, str]]]], path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    by_step, by_time = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (name, runs) in enumerate(curves.items()):
        color = f"C{i % 10}"
        for j, rows in enumerate(runs):
            rows = [r for r in rows if r.get("val/elapsed_s")]
            steps = [float(r["step"]) for r in rows]
            err = [float(r["val/theta_l1"]) for r in rows]
            seconds = [float(r["val/elapsed_s"]) for r in rows]
            label = name if j == 0 else None
            by_step.plot(steps, err, color=color, alpha=0.7, label=label)
            by_time.plot(seconds, err, color=color, alpha=0.7, label=label)
    by_step.set(xlabel="step", ylabel="validation theta L1 (permille)", yscale="log")
    by_time.set(xlabel="wall clock (s), theta-IS warmup included", yscale="log")
    by_step.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="scrapl-graph reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="reproduction config (YAML)")
    parser.add_argument("--out", default="scrapl_repro", help="output folder (default scrapl_repro)")
    parser.add_argument("--variants", help="comma-separated subset of the config's variants")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:%(name)s:%(message)s")
    spec = load_spec(args.config)
    names = args.variants.split(",") if args.variants else list(spec["variants"])
    unknown = sorted(set(names) - set(spec["variants"]))
    if unknown:
        parser.error(f"unknown variants {unknown}; the config has {sorted(spec['variants'])}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [int(s) for s in spec["seeds"]]
    for name in names:
        for seed in seeds:
            run_one(spec["task"], [str(a) for a in spec["variants"][name]], seed,
                    os.path.join(args.out, name, f"seed_{seed}"))
    print(summarize(args.out, names, seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
