r"""Cost model of one SCRAPL path: the FFTs it needs at minimum, their time on this machine, and the measured time.

One second-order path (n2, n_fr) of a batch of B signals, padded to n
samples, needs at least these FFTs in the forward pass (the backward pass
needs the adjoint of each, an FFT of the same size):

- scalogram: one real FFT of size n per signal; for each first-order
  wavelet lambda1 with j1 < j2 (the only ones this path reads), one complex
  inverse FFT of its band at resolution 2^k1 (size n / 2^k1) and one real FFT
  of the modulus U1 at the same size;
- second order: per lambda1, one complex inverse FFT of psi_n2 * U1 at the
  path's resolution 2^(k1 + k2) = 2^j2 (size n / 2^j2);
- frequential transform: a short dense matrix product across lambda1, no FFT;
- time average: per output row of the frequential transform, one real FFT of
  the modulus (size n / 2^j2) and one inverse real FFT at size n / 2^log2_T;
  none where only a few frames are kept and the average is a matrix product
  (see :mod:`scrapl_graph.jtfs.streamed`): that stage's floor is then 0 and
  only its measured time is shown.

The floor of a stage is the time this machine takes to run exactly those
FFTs (forward and adjoint, batched, each kind and size in one call, with
plans kept between calls as the transform runs them: see
:mod:`scrapl_graph.jtfs.planned_fft`); the
measured time of a stage is the difference between forward-and-backward
steps that stop after it and after the stage before.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor

from ..jtfs import JTFS, planned_fft
from .common import time_step

STAGES = ("scalogram", "second order", "frequential + time average")

#: (kind, size) -> number of transforms; kind is "r2c", "c2r" or "c2c".
FFTCounts = Counter


def path_ffts(jtfs: JTFS, idx: int, batch: int) -> Dict[str, FFTCounts]:
    """The forward FFTs of path ``idx`` per stage (see the module docstring)."""
    path = jtfs.paths[idx]
    j2 = jtfs.j2[path.n2]
    n = jtfs.n_padded
    stages = {name: Counter() for name in STAGES}
    stages["scalogram"][("r2c", n)] += batch
    for k1, start, end in jtfs.groups:
        count = max(0, min(end, path.n_lambda1) - start)
        if not count:
            continue
        stages["scalogram"][("c2c", n // 2**k1)] += batch * count
        stages["scalogram"][("r2c", n // 2**k1)] += batch * count
        stages["second order"][("c2c", n // 2 ** (k1 + jtfs._k2(j2, k1)))] += batch * count
    if hasattr(jtfs, f"phi_matrix_{j2}"):  # the time average is a matrix product: no FFT
        return stages
    rows = len(jtfs._fr_support[(path.n_fr, path.n_lambda1)])
    resolution = n // 2 ** min(j2, jtfs.log2_T)
    stages["frequential + time average"][("r2c", resolution)] += batch * rows
    stages["frequential + time average"][("c2r", n // 2**jtfs.log2_T)] += batch * rows
    return stages


def fft_floor_ms(counts: FFTCounts, device: torch.device, dtype: torch.dtype, repeats: int = 3) -> float:
    """Time (ms) of the FFTs ``counts`` and their adjoints, each kind and size batched in one call."""
    total = 0.0
    complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    for (kind, size), count in counts.items():
        if kind == "r2c":
            u = torch.randn(count, size, dtype=dtype, device=device)
            run = lambda u=u, size=size: planned_fft.irfft(planned_fft.rfft(u), n=size)  # noqa: E731
        elif kind == "c2r":
            u = torch.randn(count, size // 2 + 1, dtype=complex_dtype, device=device)
            run = lambda u=u, size=size: planned_fft.rfft(planned_fft.irfft(u, n=size))  # noqa: E731
        else:
            u = torch.randn(count, size, dtype=complex_dtype, device=device)
            run = lambda u=u: planned_fft.fft(planned_fft.ifft(u))  # noqa: E731
        total += time_step(run, device, repeats)
    return 1000 * total


def _stages(jtfs: JTFS, idx: int, x: Tensor):
    """Per stage: its inputs (detached, requiring grad) and its forward on them, reduced to a scalar for the backward."""
    path = jtfs.paths[idx]
    j2 = jtfs.j2[path.n2]
    with torch.no_grad():
        spectra, _ = jtfs.scalogram_spectra(x, path.n_lambda1)
        y2 = jtfs.time_scattering(spectra, path.n2)
    u1_hats = [s.detach().requires_grad_() for _, _, s in spectra]
    groups = [(k1, start) for k1, start, _ in spectra]

    def scalogram(inputs) -> Tensor:
        out, _ = jtfs.scalogram_spectra(inputs[0], path.n_lambda1)
        return sum(torch.view_as_real(s).square().sum() for _, _, s in out)

    def second_order(u1_hats) -> Tensor:
        out = jtfs.time_scattering([(k1, start, u) for (k1, start), u in zip(groups, u1_hats)], path.n2)
        return torch.view_as_real(out).square().sum()

    def frequential(inputs) -> Tensor:
        return jtfs._frequency_scattering(inputs[0], [path.n_fr], j2).square().sum()

    return [(scalogram, [x.detach().requires_grad_()]), (second_order, u1_hats),
            (frequential, [y2.detach().requires_grad_()])]


def path_cost(jtfs: JTFS, idx: int, x: Tensor, repeats: int = 3) -> List[Tuple[str, FFTCounts, float, float]]:
    """``(stage, forward FFTs, floor ms, measured ms)`` per stage of path ``idx`` on signals ``x`` (B, N).

    Each stage is timed alone (forward and backward) from the previous stage's output.
    """
    measured = []
    for forward, inputs in _stages(jtfs, idx, x):
        def step(forward=forward, inputs=inputs):
            for t in inputs:
                t.grad = None
            forward(inputs).backward()
        measured.append(1000 * time_step(step, x.device, repeats))
    stages = path_ffts(jtfs, idx, x.shape[0])
    return [(name, stages[name], fft_floor_ms(stages[name], x.device, x.dtype, repeats), ms)
            for name, ms in zip(STAGES, measured)]


def describe(counts: FFTCounts) -> str:
    return ", ".join(f"{c} {kind} {size}" for (kind, size), c in sorted(counts.items(), key=lambda kv: -kv[0][1]))


def cost_table(n: int, batch: int, device: str = "cpu", idxs: Sequence[int] = (), config: dict = None,
               seed: int = 0) -> str:
    """The cost model of a few paths as text: FFTs per stage, floor, measured time and their ratio."""
    from .common import PAPER_CONFIG

    jtfs = JTFS(n, **(config or PAPER_CONFIG)).to(device)
    idxs = list(idxs) or [0, jtfs.n_paths // 2, jtfs.n_paths - 1]
    x = torch.randn(batch, n, generator=torch.Generator().manual_seed(seed)).to(device)
    lines = [f"cost model of one path (batch {batch}, N={n}, padded to {jtfs.n_padded}); forward FFTs listed, "
             "floor = those FFTs and their adjoints", f"{'path (n2, n_fr, j2)':<22} {'stage':<28} {'floor ms':>9} "
             f"{'measured ms':>12} {'x floor':>8}  forward FFTs (count kind size)"]
    for idx in idxs:
        p = jtfs.paths[idx]
        label = f"{idx} ({p.n2}, {p.n_fr}, {p.j2})"
        rows = path_cost(jtfs, idx, x)
        for stage, counts, floor, ms in rows:
            ratio = ms / floor if floor > 0 else float("nan")
            lines.append(f"{label:<22} {stage:<28} {floor:>9.2f} {ms:>12.2f} {ratio:>8.1f}  {describe(counts)}")
            label = ""
        total_floor, total = sum(r[2] for r in rows), sum(r[3] for r in rows)  # the scalogram always has FFTs
        lines.append(f"{'':<22} {'total':<28} {total_floor:>9.2f} {total:>12.2f} {total / total_floor:>8.1f}")
    return "\n".join(lines)
