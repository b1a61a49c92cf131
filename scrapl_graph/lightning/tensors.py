"""In-memory sound-matching data: audio tensors (and their true thetas, when known) as a data module.

Batches: ``{"audio": (B, C, N), "index": (B,) long}``, plus ``"theta": (B,
n_theta)`` for a split given with its true thetas. The training order is the
package's resumable one (:class:`~scrapl_graph.lightning.base.ExampleDataModule`).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor

from .. import checks
from .base import SPLITS, ExampleDataModule
from .sampling import ExampleDataset

__all__ = ["TensorDataModule", "as_columns"]


def as_columns(data: Any, name: str, n_theta: Optional[int] = None) -> Dict[str, Tensor]:
    """Check one split given as tensors and return its table ``{"audio", "index"}`` (+ ``"theta"``).

    Args:
        data: audio ``(N, C, L)``, or a tuple ``(audio,)`` or ``(audio, theta)``
            with theta ``(N, n_theta)``.
        name: the argument's name, for error messages.
        n_theta: the theta width the synth expects (None: not checked).

    Returns:
        The columns, on the CPU (batches move to the training device).

    Raises:
        TypeError: for another kind of data, or tensors that are not real floating point.
        ValueError: for audio that is not ``(N, C, L)`` or not finite, or a
            theta of the wrong shape or not finite.
    """
    if torch.is_tensor(data):
        data = (data,)
    if not isinstance(data, tuple) or not 1 <= len(data) <= 2 or not all(torch.is_tensor(t) for t in data):
        raise TypeError(f"{name} must be an audio tensor (N, C, L) or a tuple (audio, theta) of tensors, got "
                        f"{type(data).__name__}; for files or other datasets, train SoundMatching with a data module")
    audio = checks.check_audio(data[0], f"{name} audio", min_length=1)
    checks.check_finite(audio, f"{name} audio", check_values=True)
    columns = {"audio": audio.detach().cpu(), "index": torch.arange(audio.shape[0])}
    if len(data) == 2:
        theta = checks.check_real_float(data[1], f"{name} theta")
        width = "n_theta" if n_theta is None else n_theta
        if theta.ndim != 2 or theta.shape[0] != audio.shape[0] or (n_theta is not None and theta.shape[1] != n_theta):
            raise ValueError(f"{name} theta must have shape ({audio.shape[0]}, {width}), one row per example, "
                             f"got {tuple(theta.shape)}")
        checks.check_finite(theta, f"{name} theta", check_values=True, what="parameters")
        columns["theta"] = theta.detach().cpu()
    return columns


class TensorDataModule(ExampleDataModule):
    """Training and validation examples held in memory, from tensors.

    Each split keeps its own table, so that the validation data may carry
    true thetas (for the theta metrics) while the training data does not;
    a split without thetas yields batches without ``"theta"``. The
    training order is drawn from ``(seed, epoch)`` and resumes mid-epoch
    from a checkpoint; validation keeps the given order.

    Args:
        train: audio ``(N, C, L)`` or ``(audio, theta)``, see :func:`as_columns`.
        val: the same, or None (no validation loader).
        batch_size: examples per batch.
        seed: seed of the training order.
        n_theta: the theta width the synth expects (None: not checked).
        drop_last: drop the last, incomplete training batch of each epoch.
        num_workers: ``DataLoader`` worker processes.

    Raises:
        TypeError / ValueError: for malformed tensors (see :func:`as_columns`)
            or training and validation audio of different channels or lengths.
    """

    def __init__(self, train: Any, val: Any = None, batch_size: int = 16, seed: int = 0,
                 n_theta: Optional[int] = None, drop_last: bool = False, num_workers: int = 0):
        super().__init__(batch_size, num_workers, seed, drop_last)
        self.tables = {"train": as_columns(train, "train_data", n_theta)}
        if val is not None:
            self.tables["val"] = as_columns(val, "val_data", n_theta)
            shapes = {split: tuple(table["audio"].shape[1:]) for split, table in self.tables.items()}
            if shapes["train"] != shapes["val"]:
                raise ValueError(f"train_data audio has (channels, samples) {shapes['train']}, val_data audio "
                                 f"{shapes['val']}: they must match")
        self.indices = {split: table["index"] for split, table in self.tables.items()}
        self.num_samples = int(self.tables["train"]["audio"].shape[-1])

    def setup(self, stage: Optional[str] = None) -> None:
        """Nothing to load: the tables are in memory from construction."""

    def dataset(self, split: str) -> ExampleDataset:
        """The dataset of ``split`` (``"train"`` or, when given, ``"val"``).

        Raises:
            ValueError: for an unknown split or one given no data.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
        if split not in self.tables:
            raise ValueError(f"no {split} data was given to this data module")
        # Each split has its own table (not one table cut by indices): their columns may differ.
        return ExampleDataset(self.tables[split], self.indices[split])
