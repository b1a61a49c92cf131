"""Figures of SCRAPL path probabilities and of learnable filterbanks (matplotlib, Agg canvas: no display needed)."""
from __future__ import annotations

import logging
import math
import os
from typing import Optional, Sequence, Tuple

import torch

log = logging.getLogger(__name__)

Region = Tuple[Tuple[float, float], Tuple[float, float]]


def plot_probs(loss, path: str, sample_rate: float, probs: Optional[torch.Tensor] = None,
               regions: Optional[Sequence[Region]] = None, title: Optional[str] = None, dpi: int = 120) -> str:
    """Write a PNG of path probabilities over the rate-scale plane (as in the paper's figure 6).

    Each second-order path is a dot at ``x = xi2 * sample_rate`` (temporal
    modulation rate in Hz, log axis) and ``y = spin * scale`` (frequential
    modulation scale in cycles per octave, the sign giving the spin;
    symmetric-log axis), coloured by ``probs / (1 / n_paths)``: 1 is the
    uniform share. First-order paths (``order == 1``: the time average, rate
    0, which a log axis cannot show) are drawn in a narrow strip of their own
    on the left, on the same scale axis and colour scale.

    Args:
        loss: a :class:`~scrapl_graph.SCRAPLLoss` (anything with ``paths`` and ``probs``).
        path: output file (``.png``); its directory must exist.
        sample_rate: sample rate in Hz of the signals the loss sees.
        probs: probabilities to show (default ``loss.probs``).
        regions: dashed rectangles ``((rate_lo, rate_hi), (scale_lo, scale_hi))``
            in the plot's units, e.g. a synth's parameter ranges.
        title: figure title.
        dpi: resolution.

    Returns:
        ``path``.

    Raises:
        ValueError: for a non-positive sample rate or probabilities of the wrong size.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not (isinstance(sample_rate, (int, float)) and sample_rate > 0 and math.isfinite(sample_rate)):
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    paths = list(loss.paths)
    probs = torch.as_tensor(loss.probs if probs is None else probs, dtype=torch.float64).detach().cpu()
    if probs.shape != (len(paths),):
        raise ValueError(f"probs must have shape ({len(paths)},), got {tuple(probs.shape)}")
    ratio = (probs * len(paths)).clamp_min(1e-3).numpy()
    # Path records without an order field (duck-typed callers) are second-order paths.
    first = [i for i, p in enumerate(paths) if getattr(p, "order", 2) == 1]
    second = [i for i, p in enumerate(paths) if getattr(p, "order", 2) != 1]
    rates = [paths[i].xi2 * sample_rate for i in second]
    scales = [p.spin * p.scale for p in paths]

    # Fig. 6 style: a plain Figure on an Agg canvas, so no global backend is switched.
    # The strip and the colorbar need constrained layout (tight_layout does not handle them).
    fig = Figure(figsize=(7.2, 4.8), layout="constrained") if first else Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    if first:
        strip, ax = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 6]})
    else:
        ax = fig.add_subplot()
    lo, hi = float(ratio.min()), float(ratio.max())
    norm = LogNorm(vmin=min(lo, 1.0) * 0.999, vmax=max(hi, 1.0) * 1.001)
    style = dict(cmap="viridis", norm=norm, s=60, edgecolors="black", linewidths=0.5)
    dots = ax.scatter(rates, [scales[i] for i in second], c=ratio[second], **style)
    fig.colorbar(dots, ax=ax, label="probability / uniform (1/P)")
    ax.set_xscale("log")
    nonzero = [abs(s) for s in scales if s != 0]
    ax.set_yscale("symlog", linthresh=min(nonzero) if nonzero else 1.0)
    if first:
        strip.scatter([0.0] * len(first), [scales[i] for i in first], c=ratio[first], **style)
        strip.set_xticks([0.0], ["S1"])
        strip.set_xlabel("1st order")
        strip.set_ylabel("frequential scale (cycles/octave, sign = spin)")
        strip.grid(True, axis="y", which="both", alpha=0.3)
    for (x0, x1), (y0, y1) in regions or []:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linestyle="--", edgecolor="red"))
    ax.set_xlabel("temporal rate (Hz)")
    if not first:
        ax.set_ylabel("frequential scale (cycles/octave, sign = spin)")
    ax.set_title(title or f"SCRAPL path probabilities ({len(paths)} paths)")
    ax.grid(True, which="both", alpha=0.3)
    if not first:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, format="png")
    log.info("Wrote path probabilities plot to %s", os.path.abspath(path))
    return path


def plot_filterbank(filterbank, path: str, title: Optional[str] = None, dpi: int = 120) -> str:
    """Write a PNG of a learnable JTFS filterbank in the Fourier domain: each wavelet now and at initialisation.

    One panel per family (first order, second order: frequency in cycles per
    sample, log axis; frequential: cycles per log-frequency bin). Each
    wavelet is drawn as its Gaussian band ``exp(-(w - xi)^2 / (2 sigma^2))``
    at the current parameters (solid) and at the initial ones (dashed).

    Args:
        filterbank: a :class:`~scrapl_graph.jtfs.parametric.LearnableFilterbank` (``jtfs.filterbank``).
        path: output file (``.png``); its directory must exist.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, name, label in zip(axes, ("psi1", "psi2", "psi_fr"), ("first order", "second order", "frequential")):
        family = getattr(filterbank, name)
        with torch.no_grad():
            xi, sigma = (t.cpu() for t in family())
        xi0, sigma0 = family.xi0.cpu(), family.sigma0.cpu()
        low = float(torch.minimum(xi - 3 * sigma, xi0 - 3 * sigma0).clamp_min(1e-5).min())
        grid = torch.logspace(math.log10(low), math.log10(0.5), 800, dtype=torch.float64)
        for k in range(len(xi)):
            ax.plot(grid, torch.exp(-((grid - xi0[k]) ** 2) / (2 * sigma0[k] ** 2)), "--", color="gray", lw=0.6)
            ax.plot(grid, torch.exp(-((grid - xi[k]) ** 2) / (2 * sigma[k] ** 2)), color=f"C{k % 10}", lw=0.9)
        ax.set_xscale("log")
        ax.set_xlabel("frequency (cycles per sample)" if name != "psi_fr" else "frequency (cycles per bin)")
        moved = float(((xi - xi0).abs() / sigma0).max())
        ax.set_title(f"{label}: {len(xi)} wavelets, largest move {moved:.2f} bandwidths", fontsize=9)
    axes[0].set_ylabel("|psi| (solid: now, dashed: initial)")
    fig.suptitle(title or "learnable JTFS filterbank")
    # Fixed margins: tight_layout measures every tick label of the log axes (a second per picture,
    # and training runs draw several).
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.84, wspace=0.18)
    fig.savefig(path, dpi=dpi, format="png")
    log.info("Wrote filterbank plot to %s", os.path.abspath(path))
    return path
