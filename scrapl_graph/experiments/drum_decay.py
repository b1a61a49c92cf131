"""The drum decay experiment: match DrumSynth targets whose decays and levels moved away from their preset.

Each target is a preset (kick, snare, tom, hi-hat) with its five decay and
level parameters (:data:`DECAY_LEVEL`) moved away from the preset's values;
every match starts from the preset and fits all 14 parameters with
:func:`~scrapl_graph.train.optimize_graph`. Two settings: ``"aligned"``
(the fitted synth renders the target's noise, no time shift) and
``"meso"`` (new noise and a new random time shift of up to ``max_shift_s``
at every rendering, target included). Reported per loss and setting, over
all targets of all seeds (each seed draws its own targets): the parameter
error (permille of each range) of the decay and level parameters and of the
rest, and the frame-loudness error of the result in dB over the transient
(first 50 ms) and the decay (:mod:`scrapl_graph.train.loudness`).
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..graph import GraphSynth
from ..losses import JTFSLoss, LossSum, SCRAPLLoss, build_loss
from ..processors import DrumSynth, OnsetShift
from ..train import normalized_param_error, optimize_graph
from ..train.loudness import frame_loudness_error

log = logging.getLogger(__name__)

#: The parameters a target moves away from its preset.
DECAY_LEVEL = ("tone_decay", "noise_decay", "pitch_env_decay", "tone_level", "noise_level")
PRESETS = ("kick", "snare", "tom", "hihat")
SETTINGS = ("aligned", "meso")


@dataclasses.dataclass
class DrumDecayConfig:
    """Settings of the experiment.

    Sized for a 2-core CPU: 0.74 s one-shots at 11.025 kHz (the hi-hat's
    noise filter is clamped below Nyquist). The JTFS follows the paper's
    TR-808 configuration (log1p, Q1 = 8, F = 1) with its time scales kept in
    seconds: J = 10 and T = 512 (46 ms, the paper's 2048 samples at 44.1
    kHz). It is coarser in frequency (Q2 = 1, J_fr = 4, Q_fr = 1; the
    paper: 2, 5, 2): 88 second-order paths instead of about 400, so that the
    full-tree JTFS baseline fits the time.
    """

    sample_rate: int = 11025
    num_samples: int = 8192
    targets_per_preset: int = 2
    move: float = 1.5          # largest move of a decay/level parameter, unconstrained units
    steps: int = 100
    lr: float = 0.05
    max_shift_s: float = 0.046
    jtfs: Dict[str, int] = dataclasses.field(
        default_factory=lambda: dict(J=10, Q1=8, Q2=1, J_fr=4, Q_fr=1, T=512, F=1))
    mss_weight: float = 0.1
    theta_is_iter: int = 5     # power-iteration steps of the theta-IS warmup (the paper: 20)

    @property
    def max_shift(self) -> int:
        return round(self.max_shift_s * self.sample_rate)


#: The recommended SCRAPL options for drums: a fifth of the draws on the first-order paths (loudness and
#: spectral envelope over time), four paths per step sharing one scalogram, and one Adam state for all
#: paths. P-Adam and P-SAGA keep state per path, which needs many visits per path; a drum match of a
#: few hundred steps draws most paths once or twice, and a path's first P-Adam step moves every
#: parameter by the full learning rate in the direction of that path's gradient sign, however little
#: the path says about the parameter. The share: 0.5 ties MSS on the decay of shifted targets (seeds
#: 0-2), 0.2 beats it on those seeds and on held-out ones, 0.1 loses the aligned decays.
DRUM_SCRAPL = dict(first_order_share=0.2, paths_per_step=4, use_p_adam=False, use_p_saga=False, optimizer="adam")


def _scrapl(cfg: DrumDecayConfig, n_theta: int, **options) -> SCRAPLLoss:
    return SCRAPLLoss(shape=cfg.num_samples, **cfg.jtfs, use_rho_log1p=True, n_theta=n_theta, **options)


def _sum(cfg: DrumDecayConfig, scrapl: nn.Module, mss_weight: Optional[float] = None) -> nn.Module:
    weight = cfg.mss_weight if mss_weight is None else mss_weight
    return LossSum({"scrapl": scrapl, "mss": build_loss("mss")}, weights={"scrapl": 1.0, "mss": weight})


def _drums(cfg: DrumDecayConfig, n_theta: int, **changes) -> SCRAPLLoss:
    return _scrapl(cfg, n_theta, **{**DRUM_SCRAPL, **changes})


def _decay_weights(n_theta: int) -> List[float]:
    """theta-IS weights that give the decay and level parameters four times the others' say."""
    names = DrumSynth.PARAMETER_NAMES
    if len(names) != n_theta:
        raise ValueError(f"expected the drum's {len(names)} parameters, got n_theta={n_theta}")
    return [1.0 if name in DECAY_LEVEL else 0.25 for name in names]


#: The losses compared, by name: a builder of (config, n_theta). ``_adam`` keeps one Adam state for all
#: paths instead of P-Adam/P-SAGA's per-path state (see :data:`DRUM_SCRAPL`).
LOSSES: Dict[str, Callable[[DrumDecayConfig, int], nn.Module]] = {
    "scrapl": lambda cfg, n: _scrapl(cfg, n),
    "scrapl_first_order": lambda cfg, n: _scrapl(cfg, n, first_order_share="uniform"),
    "scrapl_first_order_half": lambda cfg, n: _scrapl(cfg, n, first_order_share=0.5),
    "scrapl_mss": lambda cfg, n: _sum(cfg, _scrapl(cfg, n)),
    "scrapl_first_order_mss": lambda cfg, n: _sum(cfg, _scrapl(cfg, n, first_order_share="uniform")),
    "mss": lambda cfg, n: build_loss("mss"),
    "jtfs": lambda cfg, n: JTFSLoss(shape=cfg.num_samples, **cfg.jtfs, use_rho_log1p=True),
    "jtfs_first_order": lambda cfg, n: JTFSLoss(shape=cfg.num_samples, **cfg.jtfs, use_rho_log1p=True,
                                                first_order=True),
    "scrapl_first_order_theta_is": lambda cfg, n: _scrapl(cfg, n, first_order_share="uniform"),
    "scrapl_first_order_theta_is_decay": lambda cfg, n: _scrapl(cfg, n, first_order_share="uniform",
                                                                theta_weights=_decay_weights(n)),
    "scrapl_adam": lambda cfg, n: _scrapl(cfg, n, use_p_adam=False, use_p_saga=False, optimizer="adam"),
    "scrapl_first_order_half_adam": lambda cfg, n: _scrapl(cfg, n, first_order_share=0.5, use_p_adam=False,
                                                           use_p_saga=False, optimizer="adam"),
    "scrapl_drums": lambda cfg, n: _scrapl(cfg, n, **DRUM_SCRAPL),
    # Variations of the recommended options (not run by default); "half": first_order_share 0.5.
    "scrapl_drums_half": lambda cfg, n: _drums(cfg, n, first_order_share=0.5),
    "scrapl_drums_half_mss05": lambda cfg, n: _sum(cfg, _drums(cfg, n, first_order_share=0.5), 0.05),
    "scrapl_drums_half_mss10": lambda cfg, n: _sum(cfg, _drums(cfg, n, first_order_share=0.5), 0.1),
    "scrapl_drums_half_mss20": lambda cfg, n: _sum(cfg, _drums(cfg, n, first_order_share=0.5), 0.2),
    "scrapl_drums_half_mss50": lambda cfg, n: _sum(cfg, _drums(cfg, n, first_order_share=0.5), 0.5),
    "scrapl_drums_half_mss100": lambda cfg, n: _sum(cfg, _drums(cfg, n, first_order_share=0.5), 1.0),
    "scrapl_drums_half_paths8": lambda cfg, n: _drums(cfg, n, first_order_share=0.5, paths_per_step=8),
    "scrapl_drums_first01": lambda cfg, n: _drums(cfg, n, first_order_share=0.1),
    "scrapl_drums_first03": lambda cfg, n: _drums(cfg, n, first_order_share=0.3),
    "scrapl_drums_first07": lambda cfg, n: _drums(cfg, n, first_order_share=0.7),
    "scrapl_drums_first03_mss50": lambda cfg, n: _sum(cfg, _drums(cfg, n, first_order_share=0.3), 0.5),
}
VARIANTS = tuple(name for name in LOSSES if name.startswith("scrapl_drums_"))

#: Losses whose path probabilities come from a theta-IS warmup at the presets (aligned targets of the seed).
THETA_IS_LOSSES = ("scrapl_first_order_theta_is", "scrapl_first_order_theta_is_decay")

#: The losses run by default. Left out for time (``--losses`` adds them): the first-order full tree,
#: and the theta-IS variants, whose warmup (every path's curvature in the 14 drum parameters) costs
#: more on a CPU than the rest of a seed's runs together.
DEFAULT_LOSSES = tuple(name for name in LOSSES if name not in ("jtfs_first_order",) + THETA_IS_LOSSES + VARIANTS)


def drum_synth(cfg: DrumDecayConfig, meso: bool, seed: int) -> GraphSynth:
    """The decoder: DrumSynth, then (meso) a random shift around an onset delay of ``max_shift``."""
    processors = {"drum": DrumSynth(cfg.sample_rate, cfg.num_samples, seed=seed, deterministic=not meso)}
    if meso:
        processors["shift"] = OnsetShift(cfg.max_shift, offset=cfg.max_shift, seed=seed + 1)
    return GraphSynth.chain(processors, cfg.num_samples)


def decay_level_columns(synth: GraphSynth) -> List[int]:
    """Columns of theta that hold the :data:`DECAY_LEVEL` parameters."""
    return [i for i, label in enumerate(synth.layout.labels()) if label.split(".")[1].split("[")[0] in DECAY_LEVEL]


def make_targets(synth: GraphSynth, cfg: DrumDecayConfig, seed: int):
    """(theta_init, theta_target): the presets, twice each, and the same with their decays and levels moved.

    Each moved parameter goes up or down (at random) by a uniform amount in
    ``[move / 3, move]`` unconstrained units; ``seed`` picks the moves.
    """
    drum = synth.processors["drum"]
    presets = torch.cat([synth.layout.to_theta({"drum": drum.preset_parameters(p)}) for p in PRESETS])
    theta_init = presets.repeat_interleave(cfg.targets_per_preset, dim=0)
    gen = torch.Generator().manual_seed(int(seed))
    cols = decay_level_columns(synth)
    size = (theta_init.shape[0], len(cols))
    amount = cfg.move * (1 + 2 * torch.rand(size, generator=gen)) / 3
    sign = torch.where(torch.rand(size, generator=gen) < 0.5, -1.0, 1.0)
    theta_target = theta_init.clone()
    theta_target[:, cols] += sign * amount
    return theta_init, theta_target


def seed_problem(cfg: DrumDecayConfig, setting: str, seed: int):
    """(synth to fit, theta_init, theta_target, target audio) of ``seed`` in ``setting``.

    Aligned: the fitted synth is deterministic and renders the target itself
    (the same noise at every call). Meso: the target comes from a synth with
    draws of its own, and the fitted synth draws new noise and shifts at every call.
    """
    meso = setting == "meso"
    synth = drum_synth(cfg, meso, seed)
    target_synth = drum_synth(cfg, True, seed + 10_000) if meso else synth
    theta_init, theta_target = make_targets(synth, cfg, seed)
    with torch.no_grad():
        target = target_synth(theta_target)
    return synth, theta_init, theta_target, target


def theta_is_warmup(loss: SCRAPLLoss, cfg: DrumDecayConfig, seed: int, warmup_dir: Optional[str] = None) -> None:
    """theta-IS probabilities for ``loss`` from the curvature at the presets, on the aligned targets of ``seed``.

    The warmup's values are kept in ``warmup_dir`` (when given): runs of the
    same seed and path set reuse them, whatever their ``theta_weights``.
    """
    synth, theta_init, _, target = seed_problem(cfg, "aligned", seed)  # deterministic, as the warmup requires
    theta = nn.Parameter(theta_init.clone())
    loss.warmup_lc_hvp(lambda x: theta, synth, {"x": target}, [theta], save_dir=warmup_dir,
                       n_iter=cfg.theta_is_iter, progress=False)


def match(cfg: DrumDecayConfig, loss_name: str, setting: str, seed: int,
          warmup_dir: Optional[str] = None) -> List[Dict[str, object]]:
    """One run: every target of ``seed`` matched with one loss in one setting; one result row per target.

    The time per run includes the theta-IS warmup of the losses that have one
    (``warmup_seconds``; near 0 where ``warmup_dir`` already held the seed's values).
    """
    if loss_name not in LOSSES:
        raise ValueError(f"unknown loss {loss_name!r}; choose from {sorted(LOSSES)}")
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose from {SETTINGS}")
    torch.manual_seed(seed)
    fit_synth, theta_init, theta_target, target = seed_problem(cfg, setting, seed)
    loss = LOSSES[loss_name](cfg, fit_synth.n_theta)
    start = time.perf_counter()
    if loss_name in THETA_IS_LOSSES:
        theta_is_warmup(loss, cfg, seed, warmup_dir)
    warmup_s = time.perf_counter() - start
    result = optimize_graph(fit_synth, target, loss, theta_init, steps=cfg.steps, lr=cfg.lr, seed=seed,
                            progress=False, log_every=1000)
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        audio = fit_synth(result.theta)
    loudness = frame_loudness_error(audio, target, cfg.sample_rate)
    cols = decay_level_columns(fit_synth)
    rest = [i for i in range(fit_synth.n_theta) if i not in cols]
    rows = []
    for b, preset in enumerate(p for p in PRESETS for _ in range(cfg.targets_per_preset)):
        one = slice(b, b + 1)
        rows.append(dict(
            loss=loss_name, setting=setting, seed=seed, target=b, preset=preset,
            decay_level_permille=1000 * float(normalized_param_error(result.theta[one], theta_target[one], cols)),
            rest_permille=1000 * float(normalized_param_error(result.theta[one], theta_target[one], rest)),
            start_decay_level_permille=1000 * float(normalized_param_error(theta_init[one], theta_target[one], cols)),
            transient_db=float(loudness["transient"][b]), decay_db=float(loudness["decay"][b]),
            seconds=elapsed, warmup_seconds=warmup_s))
    return rows


def path_gradients(cfg: DrumDecayConfig, seed: int = 0) -> Dict[str, Tensor]:
    """Which paths carry the gradient for the decay and level parameters, at the preset (aligned setting).

    For every path of the union set (second-order paths, then first-order
    ones), the gradient of that path's loss with respect to theta at
    ``theta_init``, for the targets of ``seed``. Returns, per path: ``"order"``
    (1 or 2), ``"decay_norm"`` and ``"rest_norm"`` (mean over targets of the
    gradient norm over the decay/level columns and over the others), and
    ``"decay_cos"`` (mean over targets of the cosine between the negative
    gradient and the direction to the target over the decay/level columns:
    positive means the path's descent step goes toward the target). P-Adam
    normalises each path's gradient, so the cosine says what a path's steps
    do, the norm how the full-tree loss weighs them.
    """
    synth, theta_init, theta_target, target = seed_problem(cfg, "aligned", seed)
    loss = _scrapl(cfg, synth.n_theta, first_order_share="uniform").eval()
    cols = decay_level_columns(synth)
    rest = [i for i in range(synth.n_theta) if i not in cols]
    toward = (theta_target - theta_init)[:, cols]
    out = {k: [] for k in ("order", "decay_norm", "rest_norm", "decay_cos")}
    for p in range(loss.n_paths):
        theta = theta_init.clone().requires_grad_()
        (grad,) = torch.autograd.grad(loss(synth(theta), target, path_idx=p), theta)
        g = grad.detach()
        out["order"].append(loss.path_info[p].order)
        out["decay_norm"].append(g[:, cols].norm(dim=1).mean())
        out["rest_norm"].append(g[:, rest].norm(dim=1).mean())
        out["decay_cos"].append(torch.nn.functional.cosine_similarity(-g[:, cols], toward, dim=1).mean())
    return {k: torch.tensor(v) if k == "order" else torch.stack(v) for k, v in out.items()}


def summarize_gradients(grads: Dict[str, Tensor]) -> str:
    """A markdown summary of :func:`path_gradients`: where the decay/level gradient lives and how often it is drawn."""
    order, norm, cos = grads["order"], grads["decay_norm"], grads["decay_cos"]
    second = order == 2
    n2, n1 = int(second.sum()), int((~second).sum())
    share_first = float(norm[~second].sum() / norm.sum())
    ranked = norm[second].sort(descending=True).values
    half = int((ranked.cumsum(0) < 0.5 * ranked.sum()).sum()) + 1
    lines = [
        f"- paths: {n2} second-order, {n1} first-order",
        f"- share of the summed decay/level gradient norm carried by the first-order paths: {100 * share_first:.1f}%"
        f" ({100 * n1 / (n1 + n2):.1f}% of the union's paths)",
        f"- half of the second-order paths' decay/level gradient norm sits in {half} of {n2} paths: SCRAPL's "
        f"uniform draw hits one of them with probability {half / n2:.3f} per step",
        f"- mean cosine of a path's descent direction with the way to the target (decay/level parameters): "
        f"first-order {float(cos[~second].mean()):+.2f}, second-order {float(cos[second].mean()):+.2f}; "
        f"paths pointing the right way: first-order {int((cos[~second] > 0).sum())}/{n1}, "
        f"second-order {int((cos[second] > 0).sum())}/{n2}",
        f"- median ratio of decay/level to other-parameter gradient norm: first-order "
        f"{float((norm / grads['rest_norm'])[~second].median()):.2f}, second-order "
        f"{float((norm / grads['rest_norm'])[second].median()):.2f}",
    ]
    return "\n".join(lines)


METRICS = ("decay_level_permille", "rest_permille", "transient_db", "decay_db")


def summarize(rows: Sequence[Dict[str, object]]) -> str:
    """A markdown table: per setting and loss, mean ± 95% CI over every (seed, target) of each metric."""
    from ..train.stats import confidence_interval

    lines = ["| setting | loss | runs | decay/level ‰ | rest ‰ | transient dB | decay dB | s per run |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["setting"], r["loss"]) for r in rows}, key=lambda k: (SETTINGS.index(k[0]), list(LOSSES).index(k[1])))
    for setting, loss in keys:
        group = [r for r in rows if r["setting"] == setting and r["loss"] == loss]
        cells = []
        for metric in METRICS:
            values = [float(r[metric]) for r in group if r[metric] == r[metric]]  # NaN: no audible frame
            mean, half = confidence_interval(values) if values else (float("nan"), 0.0)
            cells.append(f"{mean:.1f} ± {half:.1f}")
        seconds = sorted({(r["seed"], float(r["seconds"])) for r in group})
        runs = len(seconds)
        cells.append(f"{sum(s for _, s in seconds) / runs:.0f}")
        lines.append(f"| {setting} | {loss} | {runs} | " + " | ".join(cells) + " |")
    start = [float(r["start_decay_level_permille"]) for r in rows]
    silent = sum(1 for r in rows if r["decay_db"] != r["decay_db"])
    lines.append(f"\nStarting point (the presets): decay/level error {sum(start) / len(start):.1f} ‰ on average. "
                 f"Mean ± 95% CI over every (seed, target); runs = seeds, each of {len(PRESETS)} presets x "
                 f"targets per preset. {silent} matches had no audible frame after the transient and are left "
                 f"out of the decay column.")
    return "\n".join(lines)


def _load_rows(path: str) -> List[Dict[str, object]]:
    """The rows of an earlier ``results.csv`` (numbers as floats, ids as ints), or none."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key in ("seed", "target"):
                row[key] = int(value)
            elif key not in ("loss", "setting", "preset") and value != "":
                row[key] = float(value)
    return rows


def run(cfg: DrumDecayConfig, losses: Sequence[str], settings: Sequence[str], seeds: Sequence[int], out: str,
        seeds_by_loss: Optional[Dict[str, Sequence[int]]] = None, diagnose: bool = True) -> str:
    """Every (setting, loss, seed) match, written to ``out`` as ``results.csv`` and ``results.md`` (returned).

    ``seeds_by_loss`` gives some losses fewer seeds (the full-tree JTFS costs
    about as much per step as SCRAPL's whole path set). Matches already in
    ``out/results.csv`` are kept and not run again, so an interrupted run
    resumes and later runs add losses to the table (use another ``out`` for
    other settings). With ``diagnose`` the per-path gradient summary of
    :func:`path_gradients` (seed 0) heads the report, after the curvature
    summary of ``--curvature`` where ``out`` holds it.
    """
    os.makedirs(out, exist_ok=True)
    csv_path = os.path.join(out, "results.csv")
    rows = _load_rows(csv_path)
    done = {(r["setting"], r["loss"], r["seed"]) for r in rows}
    for setting in settings:
        for loss_name in losses:
            for seed in (seeds_by_loss or {}).get(loss_name, seeds):
                if (setting, loss_name, seed) in done:
                    continue
                log.info("drum decay: %s, %s, seed %d", setting, loss_name, seed)
                rows.extend(match(cfg, loss_name, setting, seed, os.path.join(out, f"theta_is_seed_{seed}")))
                fields = list(dict.fromkeys(key for row in rows for key in row))
                with open(csv_path, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=fields, restval="")
                    writer.writeheader()
                    writer.writerows(rows)
    report = summarize(rows)
    if diagnose:
        report = "Where the decay/level gradient is (aligned, at the presets):\n\n" + \
            summarize_gradients(path_gradients(cfg, 0)) + "\n\n" + report
        if os.path.exists(os.path.join(out, "curvature_seed_0.pt")):  # written by --curvature
            from .drum_curvature import curvature_report

            report = "theta-IS curvature (aligned, at the presets):\n\n" + curvature_report(cfg, out) + \
                "\n\n" + report
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(report + "\n")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``scrapl-graph drums``: run the experiment and print its table."""
    import argparse

    parser = argparse.ArgumentParser(prog="scrapl-graph drums", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="scrapl_drums")
    parser.add_argument("--losses", nargs="+", default=list(DEFAULT_LOSSES), choices=list(LOSSES))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jtfs-seeds", nargs="+", type=int, default=[0],
                        help="seeds of the full-tree JTFS losses (they cost ~100 SCRAPL steps per step)")
    parser.add_argument("--steps", type=int, default=DrumDecayConfig.steps)
    parser.add_argument("--lr", type=float, default=DrumDecayConfig.lr)
    parser.add_argument("--sample-rate", type=int, default=DrumDecayConfig.sample_rate)
    parser.add_argument("--num-samples", type=int, default=DrumDecayConfig.num_samples)
    parser.add_argument("--targets-per-preset", type=int, default=DrumDecayConfig.targets_per_preset)
    parser.add_argument("--J", type=int, default=None, help="JTFS J (default: 11 at 22.05 kHz)")
    parser.add_argument("--no-diagnose", action="store_true")
    parser.add_argument("--curvature", action="store_true",
                        help="only the theta-IS curvature of every path beside its gradient (seed 0; ~10 min)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = DrumDecayConfig(sample_rate=args.sample_rate, num_samples=args.num_samples,
                          targets_per_preset=args.targets_per_preset, steps=args.steps, lr=args.lr)
    if args.J is not None:
        cfg.jtfs["J"] = args.J
    if args.curvature:
        from .drum_curvature import curvature_report

        print(curvature_report(cfg, args.out))
        return 0
    jtfs_losses = {name: args.jtfs_seeds for name in args.losses if name.startswith("jtfs")}
    print(run(cfg, args.losses, args.settings, args.seeds, args.out, jtfs_losses, not args.no_diagnose))
    return 0
