"""Peak memory of loss steps and of attaching a model, each measured in a fresh process."""
from __future__ import annotations

import gc
import logging
import os
import threading
from contextlib import contextmanager
from typing import List, Sequence, Tuple

import torch
from torch import nn

from .. import allocator
from ..losses import JTFSLoss, SCRAPLLoss, path_distance
from .common import PAPER_CONFIG, bench_mss, reference_module

class PeakMemory:
    """Peak memory of a block above its starting point: CUDA allocator stats, or sampled RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @contextmanager
    def measure(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            yield self
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - base
            return
        if not os.path.exists("/proc/self/statm"):
            yield self
            return
        base = self._rss()
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], self._rss())
                done.wait(0.002)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()
            self.peak_bytes = max(peak[0], self._rss()) - base


class Toy(nn.Module):
    """The reference README's toy autoencoder shape: Linear(n, h) -> PReLU -> Linear(h, n) -> Tanh."""

    def __init__(self, n: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n, hidden), nn.PReLU(), nn.Linear(hidden, n), nn.Tanh())

    def forward(self, x):
        return self.net(x)


def attached_memory(n: int = 48000, hidden: int = 8, steps: int = 3, reference: bool = False,
                    device: str = "cpu") -> Tuple[int, float, float]:
    """Peak memory (MB) of attaching the reference README's toy model (816,009 weights) and taking a few steps.

    Measured in a fresh process: memory freed earlier in this one would be
    reused without showing in its resident size.
    """
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_attached_memory, (n, hidden, steps, reference, device))


def _attached_memory(n: int, hidden: int, steps: int, reference: bool, device: str) -> Tuple[int, float, float]:
    logging.disable(logging.INFO)
    allocator.tune_malloc_if_requested()
    dev = torch.device(device)
    memory = PeakMemory(dev)
    torch.manual_seed(0)
    x = torch.randn(4, 1, n, device=dev)
    y = torch.randn(4, 1, n, device=dev)
    with memory.measure():
        model = Toy(n, hidden).to(dev)
        if reference:
            loss = reference_module().SCRAPLLoss(shape=n, **PAPER_CONFIG).to(dev)
        else:
            loss = SCRAPLLoss(n, **PAPER_CONFIG)
        loss.attach_params(model.parameters())
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        for _ in range(steps):
            opt.zero_grad()
            loss(model(x), y).backward()
            opt.step()
    if reference:
        state = sum(t.numel() * t.element_size() for name in ("p_adam_m", "p_adam_v", "prev_path_grads")
                    for t in getattr(loss, name).values())
    else:
        state = loss.pathwise_state_bytes()
    return sum(p.numel() for p in model.parameters()), memory.peak_bytes / 2**20, state / 2**20


def fresh_peak(kind: str, n: int, batch: int, device: str, idxs: Sequence[int] = (0,), seed: int = 0) -> float:
    """Peak memory (MB) of loss steps measured in a fresh process.

    In a process that already ran these steps, freed buffers are reused and
    its resident size no longer grows, so peaks are taken where nothing ran
    before. ``kind``: "mss", "scrapl" (the steps of paths ``idxs``), "jtfs"
    (ours, full tree) or "reference_jtfs".
    """
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_fresh_peak, (kind, n, batch, device, list(idxs), seed))


def _fresh_peak(kind: str, n: int, batch: int, device: str, idxs: List[int], seed: int) -> float:
    logging.disable(logging.INFO)
    allocator.tune_malloc_if_requested()
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, n, generator=gen).to(dev).requires_grad_()
    y = torch.randn(batch, 1, n, generator=gen).to(dev)
    if kind == "mss":
        loss, steps = bench_mss().to(dev), [lambda: loss(x, y)]
    elif kind == "scrapl":
        loss = SCRAPLLoss(n, **PAPER_CONFIG, use_p_adam=False, use_p_saga=False, grad_mult=1.0, cache_target=False)
        steps = [lambda i=i: loss(x, y, path_idx=i) for i in idxs]
    elif kind == "jtfs":
        loss, steps = JTFSLoss(n, **PAPER_CONFIG).to(dev), [lambda: loss(x, y)]
    elif kind == "reference_jtfs":
        reference_module()
        from kymatio.scattering1d.frontend.torch_frontend import TimeFrequencyScatteringTorch

        jtfs = TimeFrequencyScatteringTorch(shape=(n,), J=12, Q=(8, 2), J_fr=3, Q_fr=2, format="joint").to(dev)

        def reference_step():
            with torch.no_grad():
                S_target = jtfs(y)
            return path_distance(jtfs(x), S_target).mean()

        steps = [reference_step]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    memory = PeakMemory(dev)
    with memory.measure():
        for step in steps:
            x.grad = None
            step().backward()
    return memory.peak_bytes / 2**20

