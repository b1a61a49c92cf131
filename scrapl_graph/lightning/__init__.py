"""Lightning training layer: unsupervised sound matching (audio -> encoder -> theta -> synth -> audio).

Importing this package imports ``lightning``; ``import scrapl_graph`` does not.

Data modules (batches after ``on_after_batch_transfer``, on the training
device: ``{"audio": (B, 1, N), "theta": (B, n_theta), "index": (B,)}``, no
``"theta"`` for recordings); each exposes ``synth`` (the model's decoder),
``n_theta``, ``theta_labels``, ``sample_rate`` and ``num_samples`` from
construction on:

- :class:`SynthDataModule`: the paper's synthetic tasks (granular, chirplet)
  and a synthetic drum task;
- :class:`AudioFolderDataModule`: a folder of one-shot recordings.
"""
from .data import SynthDataModule
from .recordings import AudioFolderDataModule
from .sampling import EpochShuffleSampler, ResumableDataLoader, mix_seed
from .tasks import TASKS, build_synth, render_examples

__all__ = [
    "AudioFolderDataModule",
    "EpochShuffleSampler",
    "ResumableDataLoader",
    "SynthDataModule",
    "TASKS",
    "build_synth",
    "mix_seed",
    "render_examples",
]
