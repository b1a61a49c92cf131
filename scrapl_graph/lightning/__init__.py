"""The training layer on PyTorch Lightning (extra ``train``: ``pip install 'scrapl-graph[train]'``).

Unsupervised sound matching, audio -> encoder -> theta -> synth -> audio:

- :class:`SoundMatching`: the LightningModule, trained with any loss;
- :class:`ThetaISWarmup`: theta-IS path probabilities at fit start;
- :class:`FilterbankPictures`: learnable filterbanks drawn at fit start and end;
- data modules (batches after ``on_after_batch_transfer``, on the training
  device: ``{"audio": (B, 1, N), "theta": (B, n_theta), "index": (B,)}``, no
  ``"theta"`` for recordings); each exposes ``synth`` (the model's decoder),
  ``n_theta``, ``theta_labels``, ``sample_rate`` and ``num_samples`` from
  construction on: :class:`SynthDataModule` (the paper's granular and
  chirplet tasks, a synthetic drum task) and :class:`AudioFolderDataModule`
  (a folder of one-shot recordings); :class:`TensorDataModule` holds audio
  tensors in memory (with their thetas when known) and no synth;
- :func:`train_predictor`: one call from tensors to a trained encoder and
  its per-epoch metrics (a :class:`TrainResult`), Lightning underneath;
- :mod:`.cli`: ``scrapl-graph fit|validate|test --config FILE``;
  :mod:`.reproduce`: tables over losses and seeds.

Importing this package imports ``lightning``; ``import scrapl_graph`` does not.
"""
from .callbacks import ThetaISWarmup
from .filterbank import FilterbankPictures
from .data import SynthDataModule
from .functional import EpochHistory, TrainResult, train_predictor
from .module import SoundMatching
from .recordings import AudioFolderDataModule
from .sampling import EpochShuffleSampler, ResumableDataLoader, mix_seed
from .tasks import TASKS, build_synth, render_examples
from .tensors import TensorDataModule

__all__ = [
    "AudioFolderDataModule",
    "EpochHistory",
    "EpochShuffleSampler",
    "ResumableDataLoader",
    "SoundMatching",
    "SynthDataModule",
    "TASKS",
    "TensorDataModule",
    "ThetaISWarmup",
    "FilterbankPictures",
    "TrainResult",
    "build_synth",
    "mix_seed",
    "render_examples",
    "train_predictor",
]
