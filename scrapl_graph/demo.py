"""The built-in sound-matching demo: recover a chirplet's AM and FM rates through a GRAFX graph.

A GRAFX graph ``in -> chirplet -> EQ -> out`` renders an amplitude-modulated
exponential chirp (the paper's section 4.3 synth) through GRAFX's zero-phase
FIR equalizer. The target uses known rates theta_AM (Hz) and theta_FM
(octaves per second); every rendering, target and estimates alike, shifts
the chirplet by a random number of samples, so nothing is aligned in time
(the paper's "meso" misalignment). Starting from the middle of the ranges,
the graph's AM/FM parameters are optimized with

- SCRAPL: one JTFS path per step, drawn from theta-IS probabilities (a warmup
  on the graph parameters themselves), P-Adam and P-SAGA, plain SGD;
- auraloss multi-resolution STFT (MSS), Adam;
- the full-tree JTFS loss, Adam, with fewer steps (it costs far more per step).

The result is a table of parameter errors and times, and in the output
folder: ``target.wav``, ``estimate_<method>.wav`` (rendered at the target's
shift, to compare by ear), ``loss_curves.png``, ``path_probs.png`` and
``results.json``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch

from .graph import GraphSynth
from .io import atomic_path, write_text, write_wav
from .losses import SCRAPLLoss
from .processors import ChirpletSynth
from .train import optimize_graph

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # GRAFX's spurious torchaudio version warning
    from grafx.processors import ZeroPhaseFIREqualizer

log = logging.getLogger(__name__)

METHODS = ("scrapl", "mss", "jtfs")
SMOOTHING = 25


@dataclass
class DemoConfig:
    """Settings of the demo (the defaults run in a few minutes on a 2-core CPU).

    Attributes:
        out_dir: output folder.
        n, sample_rate: signal length (samples) and rate (Hz).
        am_hz, fm_oct: the target's theta_AM and theta_FM.
        am_range, fm_range: the synth's parameter ranges.
        max_shift: random time shift of every rendering, in samples.
        J: JTFS octaves (Q1=8, Q2=2, J_fr=3, Q_fr=2 as in the paper).
        steps, jtfs_steps: optimization steps (the full JTFS gets fewer).
        lr, lr_end: learning rate, decayed linearly.
        methods: which of "scrapl", "mss", "jtfs" to run.
        warmup: theta-IS warmup for SCRAPL (else uniform paths).
        warmup_iters: power-iteration steps per path.
        seed: seed of the shifts and path draws.
        device: "cpu" or "cuda".
        progress: progress bars.
    """

    out_dir: str = "scrapl_demo"
    n: int = 8192
    sample_rate: float = 8192.0
    am_hz: float = 3.2
    fm_oct: float = 3.6
    am_range: Sequence[float] = (2.0, 8.0)
    fm_range: Sequence[float] = (2.0, 4.0)
    max_shift: int = 1024
    J: int = 10
    steps: int = 300
    jtfs_steps: int = 30
    lr: float = 0.1
    lr_end: float = 0.005
    methods: Sequence[str] = METHODS
    warmup: bool = True
    warmup_iters: int = 20
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def validate(self) -> None:
        """Raises ValueError for settings the demo cannot run."""
        if self.n < 2**self.J:
            raise ValueError(f"n={self.n} is shorter than 2**J = {2 ** self.J}")
        unknown = set(self.methods) - set(METHODS)
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {list(self.methods)}")
        for name, value, (lo, hi) in (("am_hz", self.am_hz, self.am_range), ("fm_oct", self.fm_oct, self.fm_range)):
            if not lo < value < hi:
                raise ValueError(f"{name}={value} must lie inside its range ({lo}, {hi})")
        if self.steps < 1 or self.jtfs_steps < 1:
            raise ValueError("steps and jtfs_steps must be >= 1")
        if self.max_shift < 0 or self.max_shift >= self.n // 2:
            raise ValueError(f"max_shift must be in [0, n/2), got {self.max_shift}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but no CUDA device is available")


@dataclass
class MethodResult:
    name: str
    am_hz: float
    fm_oct: float
    am_error: float
    fm_error: float
    steps: int
    seconds: float
    history: Dict[str, List[float]] = field(repr=False, default_factory=dict)


def _graph_synth(cfg: DemoConfig, shift_seed: int, deterministic: bool = False) -> GraphSynth:
    chirplet = ChirpletSynth(sample_rate=cfg.sample_rate, num_samples=cfg.n, f0_hz=cfg.sample_rate / 16,
                             am_range=tuple(cfg.am_range), fm_range=tuple(cfg.fm_range), max_shift=cfg.max_shift,
                             seed=shift_seed, deterministic=deterministic)
    processors = {"chirplet": chirplet, "eq": ZeroPhaseFIREqualizer(num_magnitude_bins=65)}
    return GraphSynth.chain(processors, num_samples=cfg.n).to(cfg.device)


def _jtfs_config(cfg: DemoConfig) -> dict:
    return dict(shape=cfg.n, J=cfg.J, Q1=8, Q2=2, J_fr=3, Q_fr=2)


def _true_theta(cfg: DemoConfig, synth: GraphSynth) -> torch.Tensor:
    chirplet = synth.processors["chirplet"]
    theta = torch.zeros(1, synth.n_theta)
    unconstrained = chirplet.unconstrained(theta_am=[cfg.am_hz], theta_fm=[cfg.fm_oct])
    theta[0, 0] = unconstrained["theta_am"].reshape(())
    theta[0, 1] = unconstrained["theta_fm"].reshape(())
    # The equalizer has a fixed, known mild presence bump; only AM/FM are fitted.
    theta[0, 2:] = 0.5 * torch.sin(torch.linspace(0, math.pi, synth.n_theta - 2))
    return theta.to(cfg.device)


def _scrapl_loss(cfg: DemoConfig, synth_det: GraphSynth, theta_init: torch.Tensor, target: torch.Tensor) -> SCRAPLLoss:
    loss = SCRAPLLoss(**_jtfs_config(cfg), n_theta=2, grad_mult=1e8).to(cfg.device)
    if not cfg.warmup:
        return loss
    fixed = theta_init[:, 2:]
    am_fm = theta_init[:, :2].clone().requires_grad_()
    log.info("theta-IS warmup over %d paths", loss.n_paths)
    loss.warmup_lc_hvp(
        theta_fn=lambda x: am_fm,
        synth_fn=lambda theta: synth_det(torch.cat([theta, fixed], dim=1)),
        theta_fn_kwargs={"x": target},
        params=[am_fm],
        save_dir=os.path.join(cfg.out_dir, "warmup"),
        n_iter=cfg.warmup_iters,
        progress=cfg.progress,
    )
    return loss


def _plot_curves(results: Sequence[MethodResult], path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_err = fig.subplots(1, 2)
    for r in results:
        loss = torch.tensor(r.history["loss"], dtype=torch.float64)
        # SCRAPL evaluates a different path at each step: a running mean shows the trend.
        window = min(SMOOTHING, len(loss))
        smooth = torch.nn.functional.avg_pool1d(loss[None, None], window, stride=1)[0, 0]
        ax_loss.plot(r.history["step"][window - 1:], (smooth / smooth[0]).tolist(), label=r.name)
        ax_err.plot(r.history["time"], r.history["param_error"], label=r.name)
    ax_loss.set(xlabel="step", ylabel=f"loss / initial (running mean of {SMOOTHING})", yscale="log", title="loss")
    ax_err.set(xlabel="seconds", ylabel="parameter error (sigmoid scale)", yscale="log", title="parameter error")
    for ax in (ax_loss, ax_err):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def run_demo(cfg: DemoConfig) -> List[MethodResult]:
    """Run the demo; write the outputs to ``cfg.out_dir``; return one result per method.

    Raises:
        ValueError: for invalid settings.
    """
    cfg.validate()
    os.makedirs(cfg.out_dir, exist_ok=True)
    torch.manual_seed(cfg.seed)
    estimator = _graph_synth(cfg, shift_seed=cfg.seed + 1)
    true_theta = _true_theta(cfg, estimator)
    target_synth = _graph_synth(cfg, shift_seed=cfg.seed + 1000, deterministic=True)
    with torch.no_grad():
        target = target_synth(true_theta)
    theta_init = true_theta.clone()
    theta_init[:, :2] = 0.0
    chirplet = estimator.processors["chirplet"]

    results = []
    for name in cfg.methods:
        started = time.perf_counter()
        if name == "scrapl":
            loss = _scrapl_loss(cfg, _graph_synth(cfg, shift_seed=cfg.seed + 2, deterministic=True), theta_init, target)
        elif name == "jtfs":
            loss = {"class_path": "jtfs", "init_args": _jtfs_config(cfg)}
        else:
            loss = "mss"
        steps = cfg.jtfs_steps if name == "jtfs" else cfg.steps
        run = optimize_graph(estimator, target, loss, theta_init, trainable="chirplet", steps=steps, lr=cfg.lr,
                             lr_end=cfg.lr_end, true_theta=true_theta, device=cfg.device, progress=cfg.progress,
                             seed=cfg.seed)
        seconds = time.perf_counter() - started  # warmup included
        phys = chirplet.physical(run.theta[:, 0].cpu(), run.theta[:, 1].cpu())
        am, fm = float(phys["theta_am"]), float(phys["theta_fm"])
        results.append(MethodResult(name, am, fm, abs(am - cfg.am_hz) / cfg.am_hz, abs(fm - cfg.fm_oct) / cfg.fm_oct,
                                    steps, seconds, run.history))
        with torch.no_grad():
            estimate = target_synth(run.theta.to(cfg.device))
        write_wav(os.path.join(cfg.out_dir, f"estimate_{name}.wav"), estimate[0], int(cfg.sample_rate))
        if name == "scrapl":
            loss.plot_probs(os.path.join(cfg.out_dir, "path_probs.png"), sample_rate=cfg.sample_rate,
                            title="theta-IS path probabilities" if cfg.warmup else "uniform path probabilities")

    write_wav(os.path.join(cfg.out_dir, "target.wav"), target[0], int(cfg.sample_rate))
    _plot_curves(results, os.path.join(cfg.out_dir, "loss_curves.png"))
    summary = {
        "target": {"am_hz": cfg.am_hz, "fm_oct": cfg.fm_oct},
        "start": {k: float(v) for k, v in chirplet.physical(torch.zeros(1), torch.zeros(1)).items()},
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
        "results": [{k: v for k, v in vars(r).items() if k != "history"} for r in results],
    }
    write_text(os.path.join(cfg.out_dir, "results.json"), json.dumps(summary, indent=2, default=list))
    return results


def format_table(cfg: DemoConfig, results: Sequence[MethodResult]) -> str:
    """The results as a plain-text table."""
    lines = [f"target: theta_AM = {cfg.am_hz:g} Hz, theta_FM = {cfg.fm_oct:g} oct/s; "
             f"{cfg.n} samples at {cfg.sample_rate:g} Hz, random shifts up to {cfg.max_shift} samples",
             f"{'method':8s} {'steps':>5s} {'time (s)':>9s} {'AM (Hz)':>8s} {'AM err':>7s} {'FM (oct/s)':>10s} {'FM err':>7s}"]
    for r in results:
        lines.append(f"{r.name:8s} {r.steps:5d} {r.seconds:9.1f} {r.am_hz:8.2f} {100 * r.am_error:6.1f}% "
                     f"{r.fm_oct:10.2f} {100 * r.fm_error:6.1f}%")
    return "\n".join(lines)
