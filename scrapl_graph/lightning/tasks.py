"""The synthetic sound-matching tasks: their synths, theta tables and per-example seeds.

Three tasks follow the SCRAPL paper (section 4 and appendix E):

- ``"granular"``: :class:`~scrapl_graph.processors.GranularChirpSynth`
  (density, slope), 8192 Hz, 32768 samples;
- ``"chirplet"``: :class:`~scrapl_graph.processors.ChirpletSynth` (theta_AM,
  theta_FM) with one of the four AM/FM range settings of the paper's section
  4.3, random time shifts of up to 2048 samples;
- ``"drum"``: :class:`~scrapl_graph.processors.DrumSynth` (14 parameters),
  44.1 kHz, 44100 samples, followed in the meso setting by a time shift of
  up to 2048 samples around an onset delay of 2048 samples (so that no shift
  cuts the attack) -- a synthetic stand-in for the paper's TR-808 recordings.

Thetas are unconstrained (the processors map them by a sigmoid to their
physical ranges). A theta grid is laid out in the sigmoid's unit interval,
at the interior points ``k / (G + 1)``, ``k = 1 .. G``, of every dimension,
as in the paper's reference data (so a log-scale range is sampled
log-uniformly).
"""
from __future__ import annotations

import itertools
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from ..graph import GraphSynth
from ..processors import CHIRPLET_PRESETS, ChirpletSynth, DrumSynth, GranularChirpSynth, OnsetShift, TimeShift
from .sampling import EXAMPLE_STREAM, SYNTH_STREAM, THETA_STREAM, generator_for, mix_seed

__all__ = ["DRUM_PRESET_WEIGHTS", "TASKS", "TASK_DEFAULTS", "OnsetShift", "build_synth", "example_seeds",
           "grid_theta", "preset_theta", "render_examples", "uniform_theta"]

TASKS = ("granular", "chirplet", "drum")

#: Defaults per task (paper, appendix E tables 10-12). ``splits`` are
#: proportions, or counts of examples for the drum task (the TR-808 set's
#: 425 / 128 / 128 of 681 one-shots).
TASK_DEFAULTS: Dict[str, dict] = {
    "granular": dict(sample_rate=8192, num_samples=32768, max_shift=0, batch_size=32, splits=(0.6, 0.2, 0.2),
                     theta_sampling="grid", grid_size=32, n_seeds=5, n_examples=5120),
    "chirplet": dict(sample_rate=8192, num_samples=32768, max_shift=2048, batch_size=32, splits=(0.6, 0.2, 0.2),
                     theta_sampling="grid", grid_size=32, n_seeds=5, n_examples=5120),
    "drum": dict(sample_rate=44100, num_samples=44100, max_shift=2048, batch_size=8, splits=(425, 128, 128),
                 theta_sampling="uniform", grid_size=32, n_seeds=5, n_examples=681),
}

#: Drum presets drawn by ``theta_sampling="presets"``, weighted like the
#: TR-808 set of the paper (215 bass drums, 240 snares, 189 toms, 37 hi-hats).
DRUM_PRESET_WEIGHTS: Dict[str, int] = {"kick": 215, "snare": 240, "tom": 189, "hihat": 37}

# Uniform draws in the sigmoid's unit interval stay this far from its ends.
UNIT_EPS = 1e-4


def build_synth(task: str, sample_rate: float, num_samples: int, meso: bool, max_shift: int, seed: int,
                chirplet_preset: str = "slow_am_slow_fm", am_range: Optional[Sequence[float]] = None,
                fm_range: Optional[Sequence[float]] = None, synth_kwargs: Optional[dict] = None) -> GraphSynth:
    """The decoder of a task: a serial :class:`GraphSynth` ``in -> synth [-> shift] -> out``.

    With ``meso`` the random parts (time shifts, grains, drum noise) are
    drawn afresh at every call, from a generator seeded from ``seed`` (a
    rerun makes the same sequence of draws); without it there is no time
    shift and the other draws repeat at every call.

    Args:
        task: ``"granular"``, ``"chirplet"`` or ``"drum"``.
        sample_rate, num_samples: of the rendered audio.
        meso: random draws at every call and time shifts of up to ``max_shift``.
        max_shift: largest time shift in samples (granular: a circular shift,
            off by default; drum: around an onset delay of ``max_shift``).
        seed: seed of the synth's own random draws.
        chirplet_preset: a key of :data:`~scrapl_graph.processors.CHIRPLET_PRESETS`.
        am_range, fm_range: chirplet ranges that replace the preset's.
        synth_kwargs: further arguments of the synth processor (e.g.
            ``num_grains``, ``f0_hz``, ``ranges``).

    Raises:
        ValueError: for an unknown task or preset, or a shift that does not fit.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    taken = sorted(set(synth_kwargs or ()) & {"sample_rate", "num_samples", "seed", "generator", "deterministic",
                                               "max_shift", "am_range", "fm_range"})
    if taken:
        raise ValueError(f"synth_kwargs {taken} are set by the data module's own arguments; give them there")
    kwargs = dict(sample_rate=sample_rate, num_samples=num_samples, seed=mix_seed(seed, SYNTH_STREAM, 0),
                  deterministic=not meso, **(synth_kwargs or {}))
    shift = max_shift if meso else 0
    if task == "chirplet":
        if chirplet_preset not in CHIRPLET_PRESETS:
            raise ValueError(f"unknown chirplet preset {chirplet_preset!r}; choose from {sorted(CHIRPLET_PRESETS)}")
        ranges = dict(CHIRPLET_PRESETS[chirplet_preset])
        if am_range is not None:
            ranges["am_range"] = tuple(am_range)
        if fm_range is not None:
            ranges["fm_range"] = tuple(fm_range)
        return GraphSynth.chain({"chirplet": ChirpletSynth(**ranges, max_shift=shift, **kwargs)}, num_samples)
    if am_range is not None or fm_range is not None:
        raise ValueError("am_range and fm_range apply to the chirplet task only")
    shift_seed = mix_seed(seed, SYNTH_STREAM, 1)
    if task == "granular":
        processors = {"granular": GranularChirpSynth(**kwargs)}
        if shift:
            processors["shift"] = TimeShift(shift, mode="circular", seed=shift_seed)
        return GraphSynth.chain(processors, num_samples)
    processors = {"drum": DrumSynth(**kwargs)}
    if shift:
        if 2 * shift >= num_samples:
            raise ValueError(f"drum onsets fall in [0, 2 * max_shift] = [0, {2 * shift}]: "
                             f"num_samples={num_samples} must be longer")
        processors["shift"] = OnsetShift(shift, offset=shift, seed=shift_seed)
    return GraphSynth.chain(processors, num_samples)


def _logit(s: Tensor) -> Tensor:
    return torch.log(s) - torch.log1p(-s)


def grid_theta(n_theta: int, grid_size: int, n_seeds: int):
    """A full theta grid, each point repeated ``n_seeds`` times.

    Returns:
        ``(theta, groups)``: theta ``(grid_size ** n_theta * n_seeds, n_theta)``
        with example ``(point * n_seeds + r)`` at grid point ``point`` (first
        theta column varying slowest), and the example indices of each grid
        point, ``(grid_size ** n_theta, n_seeds)``.
    """
    units = torch.arange(1, grid_size + 1, dtype=torch.float64) / (grid_size + 1)
    values = _logit(units)
    points = torch.tensor(list(itertools.product(range(grid_size), repeat=n_theta)), dtype=torch.long)
    theta = values[points].repeat_interleave(n_seeds, dim=0)
    groups = torch.arange(theta.shape[0]).reshape(-1, n_seeds)
    return theta.to(torch.float32), groups


def uniform_theta(n_theta: int, n_examples: int, seed: int) -> Tensor:
    """``(n_examples, n_theta)`` thetas whose sigmoids are uniform in the unit interval.

    Example ``i`` draws from its own generator (seeded from ``seed`` and
    ``i``), so it does not depend on ``n_examples``.
    """
    rows = []
    for i in range(n_examples):
        u = torch.rand(n_theta, generator=generator_for(seed, THETA_STREAM, i), dtype=torch.float64)
        rows.append(_logit(UNIT_EPS + (1 - 2 * UNIT_EPS) * u))
    return torch.stack(rows).to(torch.float32)


def preset_theta(synth: GraphSynth, n_examples: int, seed: int, spread: float) -> Tensor:
    """Drum thetas around the presets: a preset drawn by :data:`DRUM_PRESET_WEIGHTS`, plus Gaussian noise.

    Args:
        synth: a drum task synth (its ``"drum"`` processor gives the presets).
        n_examples: number of thetas.
        seed: example ``i`` draws from a generator seeded from ``seed`` and ``i``.
        spread: standard deviation of the noise, in unconstrained units.
    """
    drum = synth.processors["drum"]
    names = list(DRUM_PRESET_WEIGHTS)
    centres = torch.cat([synth.layout.to_theta({"drum": drum.preset_parameters(n)}) for n in names]).double()
    cumulative = torch.tensor(list(DRUM_PRESET_WEIGHTS.values()), dtype=torch.float64).cumsum(0)
    rows = []
    for i in range(n_examples):
        g = generator_for(seed, THETA_STREAM, i)
        pick = int(torch.searchsorted(cumulative, torch.rand(1, generator=g, dtype=torch.float64) * cumulative[-1],
                                      right=True).clamp(max=len(names) - 1))
        rows.append(centres[pick] + spread * torch.randn(synth.n_theta, generator=g, dtype=torch.float64))
    return torch.stack(rows).to(torch.float32)


def example_seeds(seed: int, n_examples: int, n_nodes: int) -> Tensor:
    """``(n_examples, n_nodes)`` int64 seeds: example ``i``'s draws in processor ``j`` of the chain."""
    return torch.tensor([[mix_seed(seed, EXAMPLE_STREAM, i, j) for j in range(n_nodes)] for i in range(n_examples)],
                        dtype=torch.long)


def render_examples(synth: GraphSynth, theta: Tensor, seeds: Tensor) -> Tensor:
    """Render examples through a task synth with their own seeds.

    The processors of the serial graph are applied in order, processor ``j``
    drawing example ``b``'s random values from ``seeds[b, j]`` (not from the
    synth's generator), so the result depends only on ``(theta, seeds)``.

    Args:
        synth: a synth from :func:`build_synth`.
        theta: ``(B, n_theta)`` unconstrained parameters, on the rendering device.
        seeds: ``(B, number of processors)`` integer seeds.

    Returns:
        Tensor ``(B, 1, num_samples)`` on ``theta``'s device.
    """
    params = synth.layout.to_dicts(theta)
    x = theta.new_zeros(theta.shape[0], synth.num_channels, synth.num_samples)
    for j, (name, processor) in enumerate(synth.processors.items()):
        x = processor(x, seed=seeds[:, j], **params.get(name, {}))
    return x
