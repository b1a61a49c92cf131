"""Cost of learnable filters: a single-path JTFS step with regenerated filters beside the fixed transform."""
from __future__ import annotations

import statistics
from typing import Tuple

import torch

from ..jtfs import JTFS
from .common import PAPER_CONFIG, time_step


def learnable_overhead(n: int = 32768, batch: int = 4, device: str = "cpu", path_stride: int = 21,
                       repeats: int = 2, seed: int = 0) -> Tuple[float, float, float]:
    """Median single-path step times (ms) of the fixed and the learnable transform, and their median ratio.

    A step is the path of an estimate (forward and backward, gradients to the
    signal and to every filter parameter) and of a target (forward only), as
    in a SCRAPL step; the two transforms are timed path by path, interleaved.
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, generator=gen).to(dev).requires_grad_()
    y = torch.randn(batch, n, generator=gen).to(dev)
    transforms = {"fixed": JTFS(n, **PAPER_CONFIG).to(dev), "learnable": JTFS(n, **PAPER_CONFIG, learnable=True).to(dev)}

    def step(jtfs: JTFS, idx: int) -> None:
        x.grad = None
        jtfs.zero_grad(set_to_none=True)
        with torch.no_grad():
            target = jtfs.path(y, idx)
        (jtfs.path(x, idx) - target).square().mean().backward()

    times = {name: [] for name in transforms}
    for idx in range(0, transforms["fixed"].n_paths, path_stride):
        for name, jtfs in transforms.items():
            times[name].append(1000 * time_step(lambda: step(jtfs, idx), dev, repeats))
    ratio = statistics.median(b / a for a, b in zip(times["fixed"], times["learnable"]))
    return statistics.median(times["fixed"]), statistics.median(times["learnable"]), ratio
