"""What every timed row shares: the paper's configuration, the table, the machine line and the timer."""
from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch

from .. import allocator
from ..jtfs import native, planned_fft

PAPER_CONFIG = dict(J=12, Q1=8, Q2=2, J_fr=3, Q_fr=2)


def bench_mss():
    """auraloss's multi-resolution STFT loss at six resolutions, windows 64 to 2048 with hop a quarter (registry "mss")."""
    from ..losses import build_loss

    return build_loss("mss")


@dataclass
class Row:
    name: str
    ms: float
    peak_mb: Optional[float] = None
    note: str = ""


@dataclass
class BenchResult:
    machine: str
    rows: List[Row] = field(default_factory=list)

    def table(self) -> str:
        lines = [self.machine, "", f"{'step (forward + backward)':<44} {'time (ms)':>12} {'peak (MB)':>10}  note"]
        for r in self.rows:
            peak = "" if r.peak_mb is None else f"{r.peak_mb:.0f}"
            ms = "" if r.ms != r.ms else f"{r.ms:.1f}"
            lines.append(f"{r.name:<44} {ms:>12} {peak:>10}  {r.note}")
        return "\n".join(lines)

    def get(self, name: str) -> Optional[Row]:
        return next((r for r in self.rows if r.name == name), None)


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        hw = torch.cuda.get_device_name(device)
    else:
        hw = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    malloc = "tuned (--tune-malloc)" if allocator.is_tuned() else "default"
    probe = torch.zeros(1, dtype=torch.complex64)
    kernels = "C" if device.type == "cpu" and native.usable(probe) else "PyTorch"
    plans = "kept (MKL)" if device.type == "cpu" and planned_fft.available() else "torch.fft"
    return (f"machine: {hw}; torch {torch.__version__}; device {device}; glibc malloc {malloc}; "
            f"modulus kernels {kernels}; FFT plans {plans}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], None], device: torch.device, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of ``step`` in seconds, after one warm-up call."""
    step()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def reference_module():
    """The reference package, or None when it is not installed."""
    try:
        logging.getLogger("scrapl").setLevel(logging.WARNING)
        import scrapl  # noqa: F401

        return scrapl
    except Exception:  # pragma: no cover - depends on the environment
        return None

