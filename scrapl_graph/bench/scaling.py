r"""Training-batch and signal-length scaling of a SCRAPL step and of auraloss MSS.

At each setting (batch B, length N) the bench times a forward + backward
step of both losses in one process (SCRAPL: median over a sample of paths,
a fresh target every step), divides by B for the cost per example, and
takes each loss's peak memory in a fresh process. Against the base setting
(batch 4, N = 32768) it reports the growth per example; for the length it
also prints the N log N growth that FFT-bound work would show, computed on
the padded lengths both losses transform (the JTFS pads N to a power of two
with room for its averaging support).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch

from ..losses import SCRAPLLoss
from .common import PAPER_CONFIG, bench_mss, time_step
from .memory import fresh_peak

#: (batch, N): the bench's base, the paper's training batch, a signal four times longer.
SETTINGS: Tuple[Tuple[int, int], ...] = ((4, 32768), (32, 32768), (4, 131072))


@dataclass
class ScalingRow:
    batch: int
    n: int
    mss_ms: float
    scrapl_ms: float
    mss_peak_mb: float
    scrapl_peak_mb: float
    padded: int


def scaling_rows(settings: Sequence[Tuple[int, int]] = SETTINGS, device: str = "cpu", path_stride: int = 21,
                 repeats: int = 2, memory: bool = True, seed: int = 0) -> List[ScalingRow]:
    """Time MSS and a SCRAPL step at each (batch, N); peaks in fresh processes when ``memory``."""
    dev = torch.device(device)
    rows = []
    for batch, n in settings:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, 1, n, generator=gen).to(dev).requires_grad_()
        y = torch.randn(batch, 1, n, generator=gen).to(dev)

        def step(loss, **kwargs):
            x.grad = None
            loss(x, y, **kwargs).backward()

        mss = bench_mss().to(dev)
        mss_ms = 1000 * time_step(lambda: step(mss), dev, repeats=max(repeats, 3))
        scrapl = SCRAPLLoss(n, **PAPER_CONFIG, use_p_adam=False, use_p_saga=False, grad_mult=1.0, cache_target=False)
        idxs = list(range(0, scrapl.n_paths, path_stride))
        scrapl_ms = 1000 * statistics.median(time_step(lambda i=i: step(scrapl, path_idx=i), dev, repeats)
                                             for i in idxs)
        peaks = ((fresh_peak("mss", n, batch, device), fresh_peak("scrapl", n, batch, device, idxs=(0,)))
                 if memory else (float("nan"), float("nan")))
        rows.append(ScalingRow(batch, n, mss_ms, scrapl_ms, *peaks, padded=scrapl.jtfs_for(n).n_padded))
    return rows


def scaling_table(rows: List[ScalingRow]) -> str:
    """The rows as text, with growth per example against the first row."""
    base = rows[0]
    lines = [f"{'batch':>5} {'N':>7} {'MSS ms':>8} {'/ex':>6} {'SCRAPL ms':>10} {'/ex':>6} {'SCRAPL/MSS':>10} "
             f"{'MSS MB':>7} {'SCRAPL MB':>9}  growth per example vs batch {base.batch}, N={base.n}"]
    for r in rows:
        mss_growth = (r.mss_ms / r.batch) / (base.mss_ms / base.batch)
        scrapl_growth = (r.scrapl_ms / r.batch) / (base.scrapl_ms / base.batch)
        n_log_n = r.padded * math.log2(r.padded) / (base.padded * math.log2(base.padded))
        note = f"MSS x{mss_growth:.2f}, SCRAPL x{scrapl_growth:.2f}"
        if r.n != base.n:
            note += f" (N log N of the padded length: x{n_log_n:.2f})"
        lines.append(f"{r.batch:>5} {r.n:>7} {r.mss_ms:>8.1f} {r.mss_ms / r.batch:>6.1f} {r.scrapl_ms:>10.1f} "
                     f"{r.scrapl_ms / r.batch:>6.1f} {r.scrapl_ms / r.mss_ms:>10.2f} {r.mss_peak_mb:>7.0f} "
                     f"{r.scrapl_peak_mb:>9.0f}  {note}")
    return "\n".join(lines)
