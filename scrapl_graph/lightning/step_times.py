"""Training-step time of each variant of a reproduction config, measured side by side in one process.

A reproduction's own logs time every step, but runs made one after another
on a shared machine do not compare well. Here each variant's model and data
module are built from its config (as ``scrapl-graph fit`` would build them),
and one training step of each (forward, loss, backward, optimizer step, on
the same first training batch of its data module) is timed in turn,
``repeats`` rounds, so that every variant sees the same machine load::

    scrapl-graph step-times examples/configs/reproduce_encoders_cpu.yaml
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Dict, List, Optional, Sequence

import lightning.pytorch as pl
import torch

from .cli import SoundMatchingCLI
from .module import SoundMatching
from .reproduce import load_spec


def build_variant(task: str, variant_args: Sequence[str]):
    """The model, its optimizer and one training batch of a variant (no trainer, no warmup)."""
    cli = SoundMatchingCLI(SoundMatching, pl.LightningDataModule, subclass_mode_data=True, run=False,
                           args=["--config", task, *variant_args], seed_everything_default=0)
    model, data = cli.model, cli.datamodule
    data.setup("fit")
    batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)  # renders the audio
    optimizers = model.configure_optimizers()
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    return model, optimizer, batch


def _step(model: SoundMatching, optimizer: torch.optim.Optimizer, batch) -> None:
    optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():  # training_step logs, and no trainer collects it here
        warnings.filterwarnings("ignore", message=".*self.log.*")
        loss = model.training_step(batch, 0)
    loss.backward()
    optimizer.step()


def step_times(spec_path: str, variants: Optional[Sequence[str]] = None, repeats: int = 5) -> Dict[str, float]:
    """Median training-step time (ms) of each variant, rounds interleaved across variants."""
    spec = load_spec(spec_path)
    names = list(variants or spec["variants"])
    built = {name: build_variant(spec["task"], [str(a) for a in spec["variants"][name]]) for name in names}
    times: Dict[str, List[float]] = {name: [] for name in names}
    for model, optimizer, batch in built.values():  # warm-up: first calls build caches
        model.train()
        _step(model, optimizer, batch)
    for _ in range(repeats):
        for name, (model, optimizer, batch) in built.items():
            start = time.perf_counter()
            _step(model, optimizer, batch)
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="scrapl-graph step-times", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="reproduction config (YAML)")
    parser.add_argument("--variants", help="comma-separated subset of the config's variants")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    args = parser.parse_args(argv)
    names = args.variants.split(",") if args.variants else None
    results = step_times(args.config, names, args.repeats)
    print(f"training step (ms), median of {args.repeats} interleaved rounds, {torch.get_num_threads()} threads")
    for name, ms in results.items():
        print(f"  {name:<28} {ms:8.1f}")
    return 0
