"""Side-by-side timings of JTFS losses: ours, auraloss MSS, and the reference package when importable.

Every number comes from one process and one machine. A "step" is a forward
and backward pass of a loss with the estimate requiring grad and the target
not. Single-path times are medians over a sample of paths, ours and the
reference's interleaved path by path so that machine noise hits both alike.
"""
from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from torch import Tensor, nn

from ..losses import JTFSLoss, SCRAPLLoss, path_distance
from .common import PAPER_CONFIG, BenchResult, Row, bench_mss, machine_description, reference_module, sync, time_step
from .memory import PeakMemory, Toy, attached_memory, fresh_peak

__all__ = ["PAPER_CONFIG", "BenchResult", "PeakMemory", "Row", "attached_memory", "fresh_peak",
           "machine_description", "pathwise_overhead", "run", "time_step"]

log = logging.getLogger(__name__)

MSS_ROW = "auraloss MSS (6 resolutions, 64..2048)"


def pathwise_overhead(n: int, batch: int, dev: torch.device, idxs: List[int], repeats: int, seed: int):
    """Median step time with a model attached, P-Adam/P-SAGA off then on (same paths, same model)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, 1, n, generator=gen).to(dev)
    y = torch.randn(batch, 1, n, generator=gen).to(dev)
    steps = {}
    for on in (False, True):
        torch.manual_seed(seed)
        model = Toy(n, 9).to(dev)
        loss = SCRAPLLoss(n, **PAPER_CONFIG, use_p_adam=on, use_p_saga=on, grad_mult=1e8 if on else 1.0,
                          cache_target=False)
        loss.attach_params(model.parameters())
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)

        def step(idx, model=model, loss=loss, opt=opt):
            opt.zero_grad()
            loss(model(x0), y, path_idx=idx).backward()
            opt.step()

        steps[on] = step
    # Interleaved path by path, so that machine noise hits both alike.
    times = {False: [], True: []}
    for idx in idxs:
        for on in (False, True):
            times[on].append(time_step(lambda: steps[on](idx), dev, repeats))
    n_weights = sum(p.numel() for p in model.parameters())
    return 1000 * statistics.median(times[False]), 1000 * statistics.median(times[True]), n_weights


@dataclass
class _Setup:
    """The signals and the MSS anchor every timed row is compared with."""

    x: Tensor
    y: Tensor
    dev: torch.device
    batch: int
    n: int
    repeats: int
    result: BenchResult
    mss_ms: float = math.nan
    mss: Optional[nn.Module] = None
    mss_samples: List[float] = field(default_factory=list)

    def step(self, loss, **kwargs) -> None:
        self.x.grad = None
        loss(self.x, self.y, **kwargs).backward()

    def sample_mss(self) -> None:
        """One more MSS timing: interleaved with the other rows, machine load drifts alike for both."""
        self.mss_samples.append(1000 * time_step(lambda: self.step(self.mss), self.dev, self.repeats))
        self.mss_ms = statistics.median(self.mss_samples)
        self.result.get(MSS_ROW).ms = self.mss_ms


def run(batch: int = 4, n: int = 32768, device: str = "cpu", path_stride: int = 7, repeats: int = 2,
        full_tree: bool = True, reference: bool = True, reference_full_tree: bool = False,
        memory_toy: bool = True, seed: int = 0) -> BenchResult:
    """Time the losses side by side and return the table.

    Args:
        batch, n: signals of shape (batch, 1, n).
        device: 'cpu' or 'cuda'.
        path_stride: time every path_stride-th path for the single-path median.
        repeats: timings per path (the best is kept).
        full_tree: also time the full-tree JTFS loss (tens of seconds on a CPU).
        reference: time the reference package's single path when importable.
        reference_full_tree: also time the reference's full JTFS (minutes and
            about 17 GB on a CPU).
        memory_toy: measure the memory of attaching the reference README's toy
            model (ours, and the reference's when importable: about 3 GB).
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, n, generator=gen).to(dev).requires_grad_()
    y = torch.randn(batch, 1, n, generator=gen).to(dev)
    result = BenchResult(machine_description(dev) + f"; batch {batch}, N={n}, J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2")
    setup = _Setup(x, y, dev, batch, n, repeats, result)
    _mss_row(setup)
    scrapl = reference_module() if reference else None
    idxs = _single_path_rows(setup, scrapl, path_stride)
    off_ms, on_ms, n_weights = pathwise_overhead(n, batch, dev, idxs, repeats, seed)
    result.rows.append(Row("ours: model step, P-Adam/P-SAGA off", off_ms, None,
                           f"{n_weights} weights attached; forward, backward, SGD"))
    result.rows.append(Row("ours: model step, P-Adam/P-SAGA on", on_ms, None,
                           f"+{100 * (on_ms / off_ms - 1):.1f}% over off"))
    if full_tree:
        full_ms = _full_tree_row(setup)
        if scrapl is not None and reference_full_tree:
            _reference_full_tree_row(setup, full_ms)
    if memory_toy:
        _memory_rows(result, device, scrapl is not None)
    return result


def _mss_row(setup: _Setup) -> None:
    setup.mss = bench_mss().to(setup.dev)
    setup.result.rows.append(Row(MSS_ROW, math.nan, fresh_peak("mss", setup.n, setup.batch, str(setup.dev)),
                                 "median of timings interleaved with the single-path rows"))
    setup.sample_mss()


def _single_path_rows(setup: _Setup, scrapl, path_stride: int) -> List[int]:
    """SCRAPL steps (ours fresh and cached target, the reference's), median over every k-th path."""
    dev, n, result = setup.dev, setup.n, setup.result
    ours_loss = SCRAPLLoss(n, **PAPER_CONFIG, use_p_adam=False, use_p_saga=False, grad_mult=1.0, cache_target=False)
    idxs = list(range(0, ours_loss.n_paths, max(1, path_stride)))
    ref_loss = None
    if scrapl is not None:
        ref_loss = scrapl.SCRAPLLoss(shape=n, **PAPER_CONFIG, use_p_adam=False, use_p_saga=False, grad_mult=1.0).to(dev)
        if ref_loss.n_paths != ours_loss.n_paths:
            raise RuntimeError(f"path sets differ: reference {ref_loss.n_paths}, ours {ours_loss.n_paths}")
    cached_loss = SCRAPLLoss(n, **PAPER_CONFIG, use_p_adam=False, use_p_saga=False, grad_mult=1.0)
    ours, ref, cached = [], [], []
    for idx in idxs:
        setup.sample_mss()
        ours.append(time_step(lambda: setup.step(ours_loss, path_idx=idx), dev, setup.repeats))
        cached.append(time_step(lambda: setup.step(cached_loss, path_idx=idx), dev, setup.repeats))
        if ref_loss is not None:
            ref.append(time_step(lambda: setup.step(ref_loss, path_idx=idx), dev, setup.repeats))
    # Peak over the first (largest j2 = 1 intermediates), middle and last paths.
    peak = fresh_peak("scrapl", n, setup.batch, str(dev), idxs=(idxs[0], idxs[len(idxs) // 2], idxs[-1]))
    note = f"median over {len(idxs)} of {ours_loss.n_paths} paths"
    ours_ms = 1000 * statistics.median(ours)
    result.rows.append(Row("ours: SCRAPL step (one path)", ours_ms, peak, f"{note}; {ours_ms / setup.mss_ms:.2f}x MSS"))
    if ref:
        ref_ms = 1000 * statistics.median(ref)
        result.rows.append(Row("reference scrapl-loss 0.1.0: SCRAPL step", ref_ms, None,
                               f"{note}; ours is {ref_ms / ours_ms:.2f}x faster"))
    cached_ms = 1000 * statistics.median(cached)
    result.rows.append(Row("ours: SCRAPL step, fixed target (cached)", cached_ms, None,
                           f"{note}; {cached_ms / setup.mss_ms:.2f}x MSS"))
    return idxs


def _full_tree_row(setup: _Setup) -> float:
    loss = JTFSLoss(setup.n, **PAPER_CONFIG).to(setup.dev)
    full_ms = 1000 * time_step(lambda: setup.step(loss), setup.dev, repeats=1)
    setup.result.rows.append(Row("ours: full-tree JTFS loss", full_ms,
                                 fresh_peak("jtfs", setup.n, setup.batch, str(setup.dev)),
                                 f"{full_ms / setup.mss_ms:.0f}x MSS"))
    return full_ms


def _reference_full_tree_row(setup: _Setup, full_ms: float) -> None:
    from kymatio.scattering1d.frontend.torch_frontend import TimeFrequencyScatteringTorch

    ref_jtfs = TimeFrequencyScatteringTorch(shape=(setup.n,), J=12, Q=(8, 2), J_fr=3, Q_fr=2, format="joint").to(setup.dev)

    def ref_full(x, y):
        with torch.no_grad():
            S_target = ref_jtfs(y)
        return path_distance(ref_jtfs(x), S_target).mean()

    start = time.perf_counter()
    setup.step(ref_full)
    sync(setup.dev)
    ref_full_ms = 1000 * (time.perf_counter() - start)
    ref_jtfs = None  # freed before the peak is taken in a fresh process
    ref_peak = fresh_peak("reference_jtfs", setup.n, setup.batch, str(setup.dev))
    setup.result.rows.append(Row("reference: full JTFS (kymatio joint)", ref_full_ms, ref_peak,
                                 f"ours is {ref_full_ms / full_ms:.1f}x faster"))


def _memory_rows(result: BenchResult, device: str, reference: bool) -> None:
    n_weights, ours_mb, ours_state = attached_memory(device=device)
    result.rows.append(Row("ours: attach toy model + 3 steps (N=48000)", float("nan"), ours_mb,
                           f"{n_weights} weights, 315 paths; P-Adam/P-SAGA state {ours_state:.0f} MB "
                           f"(visited paths only)"))
    if reference:
        _, ref_mb, ref_state = attached_memory(device=device, reference=True)
        result.rows.append(Row("reference: attach toy model + 3 steps", float("nan"), ref_mb,
                               f"P-Adam/P-SAGA state {ref_state:.0f} MB (every path, at attach)"))

