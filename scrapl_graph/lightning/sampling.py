"""Deterministic seeds, splits, and a shuffling order that can resume mid-epoch.

Everything random in the data is drawn from seeds derived with
:func:`mix_seed` from the data module's ``seed`` and the example index (or
the epoch), never from a global generator: an example is the same whatever
the batch it lands in, the worker that loads it or the device that renders
it, and the order of an epoch depends only on ``(seed, epoch)``.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["EpochShuffleSampler", "ExampleDataset", "ResumableDataLoader", "mix_seed", "split_counts", "split_groups"]

_MASK64 = (1 << 64) - 1

# Streams of derived seeds: one tag per use, so that no two uses share draws.
SPLIT_STREAM, THETA_STREAM, EXAMPLE_STREAM, SHUFFLE_STREAM, SYNTH_STREAM, ORDER_STREAM = range(1, 7)


def mix_seed(*values: int) -> int:
    """A 63-bit seed that depends on every value in ``values`` (SplitMix64 steps).

    Nearby inputs (example ``i`` and ``i + 1``, epoch ``e`` and ``e + 1``) give
    unrelated seeds, which a plain ``seed + i`` does not.
    """
    state = 0x6A09E667F3BCC908
    for value in values:
        state = ((state ^ (int(value) & _MASK64)) + 0x9E3779B97F4A7C15) & _MASK64
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state >> 1


def generator_for(*values: int) -> torch.Generator:
    """A CPU generator seeded with ``mix_seed(*values)``."""
    return torch.Generator(device="cpu").manual_seed(mix_seed(*values))


def split_counts(total: int, splits: Sequence[float], unit: str = "examples") -> Tuple[int, int, int]:
    """Sizes ``(train, val, test)`` of ``total`` items from proportions or counts.

    Args:
        total: number of items to split.
        splits: three non-negative numbers, either proportions summing to 1
            (validation and test sizes are rounded, train takes the rest) or
            whole counts summing to ``total``.
        unit: what is counted, for error messages.

    Raises:
        ValueError: for another number of splits, negative values, values that
            sum neither to 1 nor to ``total``, or an empty training split.
    """
    values = [float(v) for v in splits]
    if len(values) != 3:
        raise ValueError(f"splits must give (train, val, test), got {list(splits)}")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"splits must be finite and non-negative, got {list(splits)}")
    whole = all(v == int(v) for v in values)
    if whole and sum(values) == total:
        counts = tuple(int(v) for v in values)
    elif abs(sum(values) - 1.0) < 1e-6:
        val, test = round(values[1] * total), round(values[2] * total)
        counts = (total - val - test, val, test)
    else:
        raise ValueError(f"splits {list(splits)} sum to {sum(values):g}: give proportions that sum to 1 or "
                         f"counts that sum to the {total} {unit}")
    if counts[0] < 1:
        raise ValueError(f"splits {list(splits)} leave no {unit} for training out of {total}")
    return counts


def split_groups(groups: Tensor, splits: Sequence[float], seed: int) -> Dict[str, Tensor]:
    """Split examples, kept together by group, into train / val / test.

    Args:
        groups: ``(num_groups, group_size)`` example indices; the examples of a
            group land in the same split (e.g. the seeds of one theta).
        splits: proportions of groups, or counts of examples (multiples of the
            group size), see :func:`split_counts`.
        seed: the groups are dealt out in a random order drawn from ``seed``.

    Returns:
        ``{"train", "val", "test"}`` -> example indices, in an order shuffled
        once from ``seed`` (so that a validation batch mixes thetas).

    Raises:
        ValueError: for splits that do not sum up, or counts that cut a group.
    """
    num_groups, size = groups.shape
    values = [float(v) for v in splits]
    if size > 1 and len(values) == 3 and sum(values) == groups.numel() and all(v == int(v) for v in values):
        if any(int(v) % size for v in values):
            raise ValueError(f"split counts {list(splits)} must be multiples of {size}, the examples per theta")
        values = [v / size for v in values]
    counts = split_counts(num_groups, values, unit="thetas" if size > 1 else "examples")
    order = torch.randperm(num_groups, generator=generator_for(seed, SPLIT_STREAM))
    out, start = {}, 0
    for name, count in zip(("train", "val", "test"), counts):
        rows = groups[order[start:start + count]].reshape(-1)
        out[name] = rows[torch.randperm(rows.numel(), generator=generator_for(seed, ORDER_STREAM, start))]
        start += count
    return out


class ExampleDataset(Dataset):
    """Rows ``rows`` of a table of tensors; item ``i`` is ``{name: column[rows[i]]}``.

    Args:
        columns: name -> tensor whose first axis indexes the examples.
        rows: example indices of this dataset (a split).
    """

    def __init__(self, columns: Dict[str, Tensor], rows: Tensor):
        self.columns = columns
        self.rows = rows.long()

    def __len__(self) -> int:
        return int(self.rows.numel())

    def __getitem__(self, i: int) -> Dict[str, Tensor]:
        row = int(self.rows[i])
        return {name: column[row] for name, column in self.columns.items()}


class EpochShuffleSampler(Sampler[int]):
    """Positions ``0 .. num_examples - 1`` in an order drawn from ``(seed, epoch)``; one rank's share.

    Under data-parallel training each of ``world`` ranks takes every
    ``world``-th position of the epoch's order, starting at its ``rank``
    (the tail that does not divide evenly is left out), so that batch k of
    all ranks together holds the same examples as batch k of one process
    with ``world`` times the batch size. Lightning's own distributed sampler
    must then be off (``Trainer(use_distributed_sampler=False)``).

    Lightning calls :meth:`set_epoch` at the start of every training epoch
    (also after resuming), so each epoch has its own order and a rerun, or a
    resumed run, sees the same orders. Outside Lightning, call it yourself;
    without it every pass uses epoch 0's order.

    Args:
        num_examples: dataset length.
        seed: seed of the orders.
        rank, world: this process's rank and the number of processes.
    """

    def __init__(self, num_examples: int, seed: int, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self.rank, self.world = int(rank), int(world)
        self.epoch = 0
        self.skip = 0  # examples of this epoch's order to leave out, set when resuming

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``; a pending resume position of another epoch is dropped."""
        if int(epoch) != self.epoch:
            self.epoch, self.skip = int(epoch), 0

    def order(self, epoch: Optional[int] = None) -> Tensor:
        """The full order of positions of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        return torch.randperm(self.num_examples, generator=generator_for(self.seed, SHUFFLE_STREAM, epoch))

    def __iter__(self):
        start, self.skip = self.skip, 0
        share = self.order()[self.rank:len(self) * self.world:self.world]
        return iter(share[start:].tolist())

    def __len__(self) -> int:
        return self.num_examples // self.world


class ResumableDataLoader(DataLoader):
    """A training loader whose position in the epoch can be saved and restored.

    It counts the batches it has handed out in the current epoch;
    :meth:`state_dict` records ``(epoch, batches)`` and :meth:`load_state_dict`
    makes the next pass start at that batch of that epoch's order, skipping
    the indices in the sampler (nothing is loaded for the skipped batches).
    Lightning 2.6 saves the state of such loaders in its checkpoints and
    restores it when resuming mid-epoch.

    Args:
        dataset: the training split.
        sampler: its :class:`EpochShuffleSampler`.
        batch_size, drop_last, num_workers: as for ``DataLoader``.
        on_batch: called with ``(epoch, batches)`` after each batch handed out.
    """

    def __init__(self, dataset: Dataset, sampler: EpochShuffleSampler, batch_size: int, drop_last: bool = True,
                 num_workers: int = 0, on_batch: Optional[Callable[[int, int], None]] = None):
        # Its own generator: starting an epoch then draws nothing from torch's global one, which the
        # model's dropout uses (a resumed run starts its loader at another point of that stream).
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                         num_workers=num_workers, generator=torch.Generator().manual_seed(sampler.seed))
        self.on_batch = on_batch
        self.position = 0

    def _identity(self) -> Dict[str, int]:
        return {"seed": self.sampler.seed, "num_examples": self.sampler.num_examples, "batch_size": self.batch_size}

    def __iter__(self):
        self.position = self.sampler.skip // self.batch_size
        for batch in super().__iter__():
            self.position += 1
            if self.on_batch is not None:
                self.on_batch(self.sampler.epoch, self.position)
            yield batch

    def state_dict(self) -> Dict[str, int]:
        """``{"epoch", "batches"}`` (batches handed out in the epoch) and the loader's identity."""
        batches = self.sampler.skip // self.batch_size if self.sampler.skip else self.position
        return {"epoch": self.sampler.epoch, "batches": batches, **self._identity()}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        """Start the next pass at batch ``state["batches"]`` of epoch ``state["epoch"]``.

        A state saved by a loader over other data (seed, length or batch
        size) is ignored with a warning.
        """
        other = {k: state.get(k) for k in self._identity()}
        if other != self._identity():
            warnings.warn(f"ignoring a training-loader state saved for {other}, this loader is {self._identity()}; "
                          "the epoch starts from its beginning", stacklevel=2)
            return
        self.sampler.epoch = int(state["epoch"])
        self.sampler.skip = int(state["batches"]) * self.batch_size
        self.position = int(state["batches"])

