"""What the data modules share: splits of a table of examples, loaders, and the resumable training order."""
from __future__ import annotations

from typing import Any, Dict, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..processors._common import check_positive_int
from .sampling import EpochShuffleSampler, ExampleDataset, ResumableDataLoader

__all__ = ["ExampleDataModule"]

SPLITS = ("train", "val", "test")


class ExampleDataModule(pl.LightningDataModule):
    """A data module over a table of examples split into train / val / test.

    Subclasses set ``self.indices`` (split name -> example indices) in their
    constructor and implement :meth:`_load_columns` (name -> tensor whose
    first axis indexes the examples); the columns are loaded once, by
    :meth:`setup` or the first loader, and kept.

    Loaders yield dicts of the columns' rows, batched. The training loader
    is a :class:`~scrapl_graph.lightning.sampling.ResumableDataLoader`: its
    order is drawn from ``(seed, epoch)``; its position (epoch, batches
    handed out) is in :meth:`state_dict`, which Lightning stores in
    checkpoints and gives back to :meth:`load_state_dict` when resuming.
    Validation and test loaders keep a fixed order.

    Args:
        batch_size: examples per batch.
        num_workers: ``DataLoader`` worker processes.
        seed: seed of the split and of the training order.
        drop_last: drop the last, incomplete training batch of each epoch
            (validation and test keep every example).
    """

    def __init__(self, batch_size: int, num_workers: int, seed: int, drop_last: bool):
        super().__init__()
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_workers = check_positive_int(num_workers, "num_workers", minimum=0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.indices: Dict[str, Tensor] = {}
        self._columns: Optional[Dict[str, Tensor]] = None
        self._position = {"epoch": 0, "batches": 0}
        self._pending_state: Optional[Dict[str, int]] = None

    def _load_columns(self) -> Dict[str, Tensor]:
        raise NotImplementedError

    def setup(self, stage: Optional[str] = None) -> None:
        """Load the columns (once)."""
        if self._columns is None:
            self._columns = self._load_columns()

    def dataset(self, split: str) -> ExampleDataset:
        """The dataset of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
        self.setup()
        return ExampleDataset(self._columns, self.indices[split])

    def train_dataloader(self) -> ResumableDataLoader:
        dataset = self.dataset("train")
        if self.drop_last and len(dataset) < self.batch_size:
            raise ValueError(f"the training split has {len(dataset)} examples, fewer than batch_size="
                             f"{self.batch_size}: every batch would be dropped (lower batch_size or set "
                             "drop_last=False)")
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        loader = ResumableDataLoader(dataset, EpochShuffleSampler(len(dataset), self.seed, rank, world),
                                     self.batch_size, drop_last=self.drop_last, num_workers=self.num_workers,
                                     on_batch=self._note_position)
        if self._pending_state is not None:
            loader.load_state_dict(self._pending_state)
            self._pending_state = None
        return loader

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _note_position(self, epoch: int, batches: int) -> None:
        self._position = {"epoch": epoch, "batches": batches}

    def state_dict(self) -> Dict[str, Any]:
        """Position of the training order: ``{"epoch", "batches"}`` plus what identifies it.

        ``batches`` counts the training batches handed out in ``epoch`` by
        the latest training loader; with the identity (seed, training-split
        length, batch size) it is what the loader's own ``state_dict`` holds.
        """
        return {**self._position, "seed": self.seed, "num_examples": int(self.indices["train"].numel()),
                "batch_size": self.batch_size}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Make the next training loader start at the saved position (see :meth:`state_dict`)."""
        self._pending_state = dict(state_dict)
        self._position = {"epoch": int(state_dict.get("epoch", 0)), "batches": int(state_dict.get("batches", 0))}

    def prepare_batch(self, batch: Dict[str, Tensor], device: Optional[torch.device] = None) -> Dict[str, Tensor]:
        """What Lightning does to a loader's batch: move it to ``device``, then :meth:`on_after_batch_transfer`.

        For code that reads the loaders outside the trainer's loop (e.g. a
        warmup that takes a batch from ``train_dataloader()``).
        """
        if device is not None:
            batch = {k: v.to(device) for k, v in batch.items()}
        return self.on_after_batch_transfer(batch, 0)

    def warmup_batches(self, n_examples: int, batch_size: int, device: Optional[torch.device] = None) -> list:
        """The first ``n_examples`` training examples (in split order, not the shuffled one), rendered, in batches.

        The theta-IS warmup's examples: the same whatever the training order,
        its epoch or the process rank.

        Raises:
            ValueError: if the training split has fewer examples.
        """
        dataset = self.dataset("train")
        if not 1 <= n_examples <= len(dataset):
            raise ValueError(f"the warmup asks for {n_examples} examples; the training split has {len(dataset)}")
        loader = DataLoader(torch.utils.data.Subset(dataset, range(n_examples)), batch_size=batch_size,
                            shuffle=False)
        return [self.prepare_batch(batch, device) for batch in loader]
