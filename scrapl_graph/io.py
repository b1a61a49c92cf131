"""Files that are either complete or absent: atomic writes, WAV output, JSON/YAML configs."""
from __future__ import annotations

import importlib
import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_wav(path: str, audio, sample_rate: int) -> None:
    """Write mono or multichannel audio (channels, samples) or (samples,) as 16-bit PCM, atomically.

    The signal is peak-normalized when it exceeds full scale, so nothing clips.
    """
    from scipy.io import wavfile

    data = audio.detach().cpu().double().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, float)
    if data.ndim == 2:
        data = data.T
    elif data.ndim != 1:
        raise ValueError(f"audio must be (samples,) or (channels, samples), got shape {data.shape}")
    peak = np.abs(data).max() if data.size else 0.0
    if peak > 1.0:
        data = data / peak
    pcm = np.round(data * 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        wavfile.write(tmp, int(sample_rate), pcm)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def load_config(path: str) -> Any:
    """Read a JSON (``.json``) or YAML (``.yaml``/``.yml``) file.

    Raises:
        ValueError: for a missing file, another extension, or a syntax error (with its position).
    """
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    with open(path) as f:
        text = f.read()
    if ext == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON: {err}") from None
    if ext in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: invalid YAML: {err}") from None
    raise ValueError(f"config {path!r} must be .json, .yaml or .yml")


def import_object(class_path: str, aliases: Mapping[str, Any] = ()) -> Any:
    """Resolve ``'package.module.Name'`` (or a short alias) to the object it names.

    Raises:
        ValueError: if it cannot be imported.
    """
    aliases = dict(aliases)
    if class_path in aliases:
        return aliases[class_path]
    module_name, _, attr = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"unknown name {class_path!r}; use 'module.Class' or one of {sorted(aliases)}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of {class_path!r}: {err}") from None
    if not hasattr(module, attr):
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def instantiate(spec: Any, aliases: Mapping[str, Callable] = ()) -> Any:
    """Build objects from ``{"class_path": ..., "init_args": {...}}`` specs, recursively.

    Other mappings and lists are walked; plain values are returned as they are.

    Raises:
        ValueError: for unknown class paths or keys other than class_path/init_args beside class_path.
        TypeError: when the constructor rejects the arguments.
    """
    if isinstance(spec, Mapping) and "class_path" in spec:
        extra = set(spec) - {"class_path", "init_args"}
        if extra:
            raise ValueError(f"unexpected keys {sorted(extra)} beside class_path {spec['class_path']!r}")
        target = import_object(spec["class_path"], aliases)
        args = instantiate(dict(spec.get("init_args") or {}), aliases)
        try:
            return target(**args)
        except TypeError as err:
            raise TypeError(f"{spec['class_path']}: {err}") from None
    if isinstance(spec, Mapping):
        return {k: instantiate(v, aliases) for k, v in spec.items()}
    if isinstance(spec, list):
        return [instantiate(v, aliases) for v in spec]
    return spec
