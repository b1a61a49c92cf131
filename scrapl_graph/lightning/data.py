"""Synthetic sound-matching data: thetas and seeds, rendered to audio on the training device.

Batches contract (after ``on_after_batch_transfer``, on the device):
``{"audio": (B, 1, N), "theta": (B, n_theta) unconstrained true theta,
"index": (B,) long example indices}``.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from ..processors._common import check_positive_int
from .base import ExampleDataModule
from .sampling import split_groups
from .tasks import (TASK_DEFAULTS, TASKS, build_synth, example_seeds, grid_theta, preset_theta, render_examples,
                    uniform_theta)

__all__ = ["SynthDataModule"]

SAMPLINGS = {"granular": ("grid", "uniform"), "chirplet": ("grid", "uniform"), "drum": ("uniform", "presets")}


class SynthDataModule(ExampleDataModule):
    """Examples of a synthetic task: true thetas and seeds, rendered to audio batch by batch.

    An example is a row ``(theta, seeds, index)``; its audio is rendered in
    :meth:`on_after_batch_transfer`, on the training device, in one batched
    call of the task's synth, each example drawing its random values (time
    shift, grains, drum noise) from its own seeds. So example ``i`` always
    has the same theta and audio (up to the device's float rounding),
    whatever the batch, the worker or the device, and the datasets hold no
    audio.

    Thetas (see :mod:`scrapl_graph.lightning.tasks`):

    - ``"grid"`` (granular and chirplet): every point of a ``grid_size`` per
      dimension grid, repeated with ``n_seeds`` seeds: the paper's 32 x 32 x 5 =
      5120 examples. The split deals out grid points, so a theta of the
      validation or test split is never seen in training (as in the paper's
      reference data, which split by grid point into 5 folds, 3 for training).
    - ``"uniform"``: ``n_examples`` thetas whose sigmoids are uniform in the
      unit interval (each physical range sampled uniformly, log-uniformly on
      a log scale), one seed each. Default for the drum task, with the sizes
      of the paper's TR-808 set (681 examples split 425 / 128 / 128).
    - ``"presets"`` (drum): the drum presets (kick, snare, tom, hi-hat,
      weighted like the TR-808 set) plus Gaussian noise of ``preset_spread``
      in unconstrained units.

    ``synth`` is the decoder for the model: the same processors, drawing
    afresh at every call with ``meso`` (the paper's misaligned "meso"
    setting), or without time shifts and with repeated draws otherwise
    ("micro"; the targets have no time shift either then). Targets always
    use their examples' seeds. ``synth``, ``n_theta``, ``theta_labels``,
    ``sample_rate`` and ``num_samples`` exist right after construction.

    Args:
        task: ``"granular"``, ``"chirplet"`` or ``"drum"``.
        chirplet_preset: one of the paper's four AM/FM settings (section 4.3):
            ``"slow_am_slow_fm"`` (AM [1, 2] Hz, FM [0.5, 1] oct/s),
            ``"slow_am_moderate_fm"`` ([1, 2], [2, 4]), ``"fast_am_moderate_fm"``
            ([2.8, 8.4], [2, 4]), ``"fast_am_fast_fm"`` ([2.8, 8.4], [4, 12]).
        am_range, fm_range: custom chirplet ranges (Hz, oct/s) replacing the preset's.
        theta_sampling: ``"grid"``, ``"uniform"`` or ``"presets"`` (default:
            grid, or uniform for the drum task).
        grid_size, n_seeds: grid points per dimension (32) and seeds per point (5).
        n_examples: number of thetas when not on a grid (5120; drum: 681).
        preset_spread: noise around the drum presets, in unconstrained units.
        splits: (train, val, test) proportions summing to 1, or example counts
            summing to the number of examples (default (0.6, 0.2, 0.2); drum:
            (425, 128, 128)).
        batch_size: default 32 (drum: 8, as in the paper).
        num_samples, sample_rate: default 32768 samples at 8192 Hz (drum: 44100 at 44100 Hz).
        max_shift: largest random time shift in samples (default 2048 for
            chirplet and drum, 0 for granular, where it is a circular shift).
        meso: random draws at every call of ``synth`` and time shifts.
        seed: seed of the split, of the thetas (when drawn), of every
            example's seeds, of the training order and of ``synth``'s draws.
        num_workers: ``DataLoader`` worker processes.
        drop_last: drop the incomplete last training batch.
        synth_kwargs: further arguments of the synth processor (e.g.
            ``num_grains``, ``grain_samples``, ``f0_hz``, drum ``ranges``).

    Raises:
        ValueError: for an unknown task, preset or sampling, options that do
            not apply to the task, or splits that do not sum up.
    """

    def __init__(self, task: str = "granular", chirplet_preset: str = "slow_am_slow_fm",
                 am_range: Optional[Sequence[float]] = None, fm_range: Optional[Sequence[float]] = None,
                 theta_sampling: Optional[str] = None, grid_size: Optional[int] = None,
                 n_seeds: Optional[int] = None, n_examples: Optional[int] = None, preset_spread: float = 0.5,
                 splits: Optional[Sequence[float]] = None, batch_size: Optional[int] = None,
                 num_samples: Optional[int] = None, sample_rate: Optional[int] = None,
                 max_shift: Optional[int] = None, meso: bool = True, seed: int = 0, num_workers: int = 0,
                 drop_last: bool = True, synth_kwargs: Optional[dict] = None):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
        defaults = TASK_DEFAULTS[task]
        pick = lambda value, name: defaults[name] if value is None else value  # noqa: E731
        super().__init__(pick(batch_size, "batch_size"), num_workers, seed, drop_last)
        self.save_hyperparameters()
        self.task = task
        self.meso = bool(meso)
        self.theta_sampling = pick(theta_sampling, "theta_sampling")
        if self.theta_sampling not in SAMPLINGS[task]:
            raise ValueError(f"theta_sampling {self.theta_sampling!r} does not apply to the {task} task; "
                             f"choose from {SAMPLINGS[task]}")
        on_grid = self.theta_sampling == "grid"
        if not on_grid and (grid_size is not None or n_seeds is not None):
            raise ValueError(f"grid_size and n_seeds apply to theta_sampling='grid', not {self.theta_sampling!r}")
        if on_grid and n_examples is not None:
            raise ValueError("with theta_sampling='grid' the number of examples is grid_size ** n_theta * n_seeds; "
                             "leave n_examples unset")
        self.sample_rate = check_positive_int(pick(sample_rate, "sample_rate"), "sample_rate")
        self.num_samples = check_positive_int(pick(num_samples, "num_samples"), "num_samples")
        self.max_shift = check_positive_int(pick(max_shift, "max_shift"), "max_shift", minimum=0)
        self.synth = build_synth(task, self.sample_rate, self.num_samples, self.meso, self.max_shift, seed,
                                 chirplet_preset=chirplet_preset, am_range=am_range, fm_range=fm_range,
                                 synth_kwargs=synth_kwargs)
        self.n_theta = self.synth.n_theta
        self.theta_labels = self.synth.layout.labels()

        if on_grid:
            self.grid_size = check_positive_int(pick(grid_size, "grid_size"), "grid_size")
            self.n_seeds = check_positive_int(pick(n_seeds, "n_seeds"), "n_seeds")
            theta, groups = grid_theta(self.n_theta, self.grid_size, self.n_seeds)
        else:
            count = check_positive_int(pick(n_examples, "n_examples"), "n_examples")
            if self.theta_sampling == "uniform":
                theta = uniform_theta(self.n_theta, count, seed)
            else:
                theta = preset_theta(self.synth, count, seed, float(preset_spread))
            groups = torch.arange(count)[:, None]
        self.n_examples = theta.shape[0]
        self.indices = split_groups(groups, pick(splits, "splits"), seed)
        self._columns = {"theta": theta, "seed": example_seeds(seed, self.n_examples, len(self.synth.processors)),
                         "index": torch.arange(self.n_examples)}

    def _load_columns(self) -> Dict[str, Tensor]:
        return self._columns

    @property
    def theta(self) -> Tensor:
        """All examples' unconstrained thetas, ``(n_examples, n_theta)`` (CPU)."""
        return self._columns["theta"]

    def render(self, index: Tensor, device: Optional[torch.device] = None) -> Tensor:
        """Audio ``(len(index), 1, num_samples)`` of the examples ``index``, rendered on ``device``."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        theta, seeds = self._columns["theta"][index], self._columns["seed"][index]
        with torch.no_grad():
            return render_examples(self.synth, theta.to(device), seeds)

    def on_after_batch_transfer(self, batch: Dict[str, Tensor], dataloader_idx: int = 0) -> Dict[str, Tensor]:
        """Render the batch's targets on its device: ``{"audio", "theta", "index"}``."""
        if "audio" in batch:
            return batch
        with torch.no_grad():
            audio = render_examples(self.synth, batch["theta"], batch["seed"])
        return {"audio": audio, "theta": batch["theta"], "index": batch["index"]}
