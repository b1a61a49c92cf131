"""Pictures of learnable JTFS filterbanks, written by a training run at its start and end."""
from __future__ import annotations

import os
from typing import List, Optional

import lightning.pytorch as pl

from ..jtfs.parametric import LearnableFilterbank
from ..plotting import plot_filterbank


class FilterbankPictures(pl.Callback):
    """Write ``filterbank_{i}_init.png`` at fit start and ``filterbank_{i}_trained.png`` at fit end.

    One pair per learnable filterbank in the module (an encoder's, a loss's),
    in ``out_dir`` (default: the trainer's log directory, else its root).

    Args:
        out_dir: directory of the pictures (created if missing).
    """

    def __init__(self, out_dir: Optional[str] = None):
        self.out_dir = out_dir
        self.written: List[str] = []

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        banks = [m for m in pl_module.modules() if isinstance(m, LearnableFilterbank)]
        if not banks or not trainer.is_global_zero:
            return
        out_dir = self.out_dir or trainer.log_dir or trainer.default_root_dir
        os.makedirs(out_dir, exist_ok=True)
        for i, bank in enumerate(banks):
            path = os.path.join(out_dir, f"filterbank_{i}_{stage}.png")
            self.written.append(plot_filterbank(bank, path, title=f"learnable JTFS filterbank {i}, {stage}"))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "init")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module, "trained")
