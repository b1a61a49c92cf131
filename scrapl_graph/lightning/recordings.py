"""Real recordings: a folder of one-shot audio files as sound-matching targets.

Batches (after ``on_after_batch_transfer``): ``{"audio": (B, 1, N),
"index": (B,) long}``; recordings carry no theta.
"""
from __future__ import annotations

import pathlib
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ..graph import GraphSynth
from ..processors._common import check_positive_int
from .base import ExampleDataModule
from .sampling import split_groups
from .tasks import TASKS, build_synth

__all__ = ["AUDIO_EXTENSIONS", "AudioFolderDataModule", "find_audio_files", "load_one_shot", "read_audio"]

AUDIO_EXTENSIONS = (".wav", ".flac")


def find_audio_files(root: Union[str, pathlib.Path]) -> List[pathlib.Path]:
    """WAV and FLAC files under ``root``, recursively, sorted by relative path.

    Raises:
        FileNotFoundError: if ``root`` is not a folder.
        ValueError: if it holds no WAV or FLAC file.
        ImportError: if it holds FLAC files and ``soundfile`` is not installed.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {str(root)!r} does not exist or is not a folder")
    files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS),
                   key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise ValueError(f"no {'/'.join(AUDIO_EXTENSIONS)} files found under {str(root)!r}")
    if any(p.suffix.lower() == ".flac" for p in files):
        _soundfile()
    return files


def _soundfile():
    try:
        import soundfile
    except ImportError as error:
        raise ImportError("reading FLAC files needs the 'soundfile' package, which is not installed: "
                          "pip install soundfile (or convert the files to WAV)") from error
    return soundfile


def _to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM to floats in [-1, 1); floats unchanged."""
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    return data.astype(np.float32)


def read_audio(path: Union[str, pathlib.Path]) -> Tuple[Tensor, int]:
    """Read a WAV (scipy) or FLAC (soundfile) file.

    Returns:
        ``(audio, sample_rate)``: float32 ``(channels, samples)`` in [-1, 1].

    Raises:
        ValueError: if the file cannot be read or holds no samples.
        ImportError: for FLAC without ``soundfile``.
    """
    path = pathlib.Path(path)
    try:
        if path.suffix.lower() == ".flac":
            data, sample_rate = _soundfile().read(str(path), dtype="float32", always_2d=True)
        else:
            from scipy.io import wavfile

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", wavfile.WavFileWarning)  # unknown chunks are skipped
                sample_rate, data = wavfile.read(str(path))
    except ImportError:
        raise
    except Exception as error:  # scipy and libsndfile raise many kinds for a bad file
        raise ValueError(f"could not read audio file {str(path)!r}: {error}") from error
    data = _to_float(np.asarray(data))
    data = data[:, None] if data.ndim == 1 else data
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"audio file {str(path)!r} holds no samples (shape {data.shape})")
    if not np.isfinite(data).all():
        raise ValueError(f"audio file {str(path)!r} holds NaN or Inf samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sample_rate)


def load_one_shot(path: Union[str, pathlib.Path], sample_rate: int, num_samples: int, pad_start: int = 0) -> Tensor:
    """A file as a mono ``(1, num_samples)`` one-shot at ``sample_rate``.

    Channels are averaged, the audio resampled (``torchaudio.functional.resample``),
    delayed by ``pad_start`` zeros, then cropped or zero-padded at the end to
    ``num_samples``.
    """
    audio, rate = read_audio(path)
    audio = audio.mean(dim=0, keepdim=True)
    if rate != sample_rate:
        from torchaudio.functional import resample

        audio = resample(audio, orig_freq=rate, new_freq=sample_rate)
    audio = torch.nn.functional.pad(audio, (pad_start, 0))[:, :num_samples]
    return torch.nn.functional.pad(audio, (0, num_samples - audio.shape[-1]))


class AudioFolderDataModule(ExampleDataModule):
    """One-shot recordings (WAV, FLAC) of a folder, for unsupervised sound matching.

    Files are found recursively and sorted by path; each is read once (at
    :meth:`setup` or the first loader) and kept in memory as a mono
    ``(1, num_samples)`` one-shot: channels averaged, resampled to
    ``sample_rate``, delayed by ``pad_start`` zeros, cropped or zero-padded
    to ``num_samples``. Example ``i`` is the ``i``-th file (``files[i]``).

    Args:
        root: the folder.
        sample_rate, num_samples: of the targets (paper's TR-808: 44100 Hz, 44100).
        splits: (train, val, test) proportions summing to 1 or file counts
            summing to the number of files (the paper's 681 TR-808 one-shots:
            ``(425, 128, 128)``), dealt out in a random order drawn from ``seed``.
        synth: the decoder for the model: a ``GraphSynth``, or a task name
            (``"drum"``, ``"chirplet"``, ``"granular"``) for that task's synth
            at ``sample_rate`` and ``num_samples`` with its default settings.
        meso, max_shift: for a synth given by name, random time shifts of up
            to ``max_shift`` samples at every call (the drum synth's onsets then
            lie in ``[0, 2 max_shift]``), see :func:`~scrapl_graph.lightning.tasks.build_synth`.
        pad_start: zeros put before each recording; default ``max_shift`` for
            a drum synth given by name in the meso setting (its onsets are
            then centred on the recordings'), else 0.
        batch_size: default 8 (paper's TR-808 setting).
        seed: seed of the split, of the training order and of the synth's draws.
        num_workers, drop_last: as for :class:`SynthDataModule`.
        synth_kwargs: further arguments of a synth given by name.

    Raises:
        FileNotFoundError / ValueError / ImportError: for a missing or empty
            folder, unreadable files, FLAC files without ``soundfile``, splits
            that do not sum up, or a synth of another length or sample rate.
    """

    def __init__(self, root: str, sample_rate: int = 44100, num_samples: int = 44100,
                 splits: Sequence[float] = (0.6, 0.2, 0.2), synth: Union[str, GraphSynth] = "drum", meso: bool = True,
                 max_shift: int = 2048, pad_start: Optional[int] = None, batch_size: int = 8, seed: int = 0,
                 num_workers: int = 0, drop_last: bool = True, synth_kwargs: Optional[dict] = None):
        super().__init__(batch_size, num_workers, seed, drop_last)
        self.save_hyperparameters(ignore=["synth"] if isinstance(synth, GraphSynth) else None)
        self.root = pathlib.Path(root)
        self.sample_rate = check_positive_int(sample_rate, "sample_rate")
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.files = find_audio_files(self.root)
        self.n_examples = len(self.files)
        self.indices = split_groups(torch.arange(self.n_examples)[:, None], splits, seed)
        max_shift = check_positive_int(max_shift, "max_shift", minimum=0)
        if isinstance(synth, str):
            if synth not in TASKS:
                raise ValueError(f"unknown synth {synth!r}; give a GraphSynth or one of {TASKS}")
            self.synth = build_synth(synth, self.sample_rate, self.num_samples, meso, max_shift, seed,
                                     synth_kwargs=synth_kwargs)
            default_pad = max_shift if (synth == "drum" and meso) else 0
        elif isinstance(synth, GraphSynth):
            if synth_kwargs:
                raise ValueError("synth_kwargs apply to a synth given by name, not to a GraphSynth")
            self.synth, default_pad = synth, 0
        else:
            raise TypeError(f"synth must be a GraphSynth or a task name, got {type(synth).__name__}")
        if self.synth.num_samples != self.num_samples:
            raise ValueError(f"the synth renders {self.synth.num_samples} samples, the targets have {self.num_samples}")
        rates = {float(p.sample_rate) for p in self.synth.processors.values() if hasattr(p, "sample_rate")}
        if rates - {float(self.sample_rate)}:
            raise ValueError(f"the synth's processors run at {sorted(rates)} Hz, the targets at {self.sample_rate} Hz")
        self.pad_start = check_positive_int(default_pad if pad_start is None else pad_start, "pad_start", minimum=0)
        self.n_theta = self.synth.n_theta
        self.theta_labels = self.synth.layout.labels()

    def _load_columns(self) -> Dict[str, Tensor]:
        audio = torch.stack([load_one_shot(p, self.sample_rate, self.num_samples, self.pad_start)
                             for p in self.files])
        return {"audio": audio, "index": torch.arange(self.n_examples)}

    @property
    def audio(self) -> Tensor:
        """All targets, ``(n_examples, 1, num_samples)`` (CPU; loads the files on first use)."""
        self.setup()
        return self._columns["audio"]

    def on_after_batch_transfer(self, batch: Dict[str, Tensor], dataloader_idx: int = 0) -> Dict[str, Tensor]:
        """Batches are ready as loaded: ``{"audio", "index"}``."""
        return batch
