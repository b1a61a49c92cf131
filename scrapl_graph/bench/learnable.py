"""Cost of learnable filters: SCRAPL single-path steps with regenerated filters beside the fixed transform."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Dict

import torch

from ..losses import SCRAPLLoss
from .common import PAPER_CONFIG, time_step


@dataclass
class LearnableCost:
    """Median step times (ms) over paths; each ratio is the median per-path ratio to its fixed counterpart
    (regeneration to the fixed transform's step, trained to the fixed ``SCRAPLLoss`` step)."""

    fixed_ms: float
    regeneration_ms: float
    regeneration_ratio: float
    fixed_loss_ms: float
    trained_ms: float
    trained_ratio: float

    def describe(self) -> str:
        return (f"single-path step (median over paths): fixed filters {self.fixed_ms:.1f} ms, learnable "
                f"{self.regeneration_ms:.1f} ms (regeneration: {self.regeneration_ratio:.2f}x);\n"
                f"SCRAPLLoss step: fixed {self.fixed_loss_ms:.1f} ms, learnable filters trained through "
                f"estimate and target {self.trained_ms:.1f} ms ({self.trained_ratio:.2f}x)")


def learnable_overhead(n: int = 32768, batch: int = 4, device: str = "cpu", path_stride: int = 21,
                       repeats: int = 2, seed: int = 0) -> LearnableCost:
    """Time four single-path steps (forward and backward, fresh target each), path by path, interleaved.

    - fixed / regeneration: the path of a target (no gradient) and of an
      estimate (gradients to the signal and, when learnable, to every filter
      parameter) with the fixed and the learnable transform: the same
      transform work, plus regenerating the filters and their gradients;
    - fixed loss / trained: ``SCRAPLLoss`` and ``SCRAPLLoss(learnable=True)``
      as a training step runs them, the latter differentiating the target's
      coefficients with respect to the filters too (a second backward pass).
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, n, generator=gen).to(dev).requires_grad_()
    y = torch.randn(batch, 1, n, generator=gen).to(dev)
    options = dict(PAPER_CONFIG, use_p_adam=False, use_p_saga=False, optimizer="adam", cache_target=False)
    fixed = SCRAPLLoss(n, **options).to(dev)
    learnable = SCRAPLLoss(n, **options, learnable=True).to(dev)

    def direct_step(loss: SCRAPLLoss, idx: int) -> None:
        jtfs = loss.jtfs
        with jtfs.shared_filters():
            with torch.no_grad():
                target = jtfs.paths_coefficients(y.reshape(batch, n), [idx])
            distance = (jtfs.paths_coefficients(x.reshape(batch, n), [idx]) - target).square().mean()
        distance.backward()

    steps: Dict[str, Callable[[int], None]] = {
        "fixed": lambda idx: direct_step(fixed, idx),
        "regeneration": lambda idx: direct_step(learnable, idx),
        "fixed loss": lambda idx: fixed(x, y, path_idx=idx).backward(),
        "trained": lambda idx: learnable(x, y, path_idx=idx).backward(),
    }
    times: Dict[str, list] = {name: [] for name in steps}
    for idx in range(0, fixed.n_paths, path_stride):
        for name, step in steps.items():
            def run() -> None:
                x.grad = None
                learnable.zero_grad(set_to_none=True)
                step(idx)
            times[name].append(1000 * time_step(run, dev, repeats))

    def ratio(name: str, base: str) -> float:
        return statistics.median(b / a for a, b in zip(times[base], times[name]))

    median = {name: statistics.median(t) for name, t in times.items()}
    return LearnableCost(median["fixed"], median["regeneration"], ratio("regeneration", "fixed"),
                         median["fixed loss"], median["trained"], ratio("trained", "fixed loss"))
