"""Path-probability files that carry their identity: the JTFS configuration and the path set.

A probability vector only means something for the path set it was computed
on: index 42 is one (n2, n_fr) pair of one configuration. Files written here
hold ``{"format": 1, "probs": tensor, "identity": {...}}``, where the
identity names the JTFS configuration and lists the path keys; loading a
file into a loss of another configuration or path set is refused. The keys
are ``(n2, n_fr)``, with ``n2 = -1`` for first-order paths, so a file of the
second-order paths and one of a set with first-order paths never match. The
reference package writes bare tensors: those load when their length equals
the number of paths (nothing else can be checked).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..io import atomic_save
from .sampler import check_probs

PROBS_FORMAT = 1


def path_set_identity(jtfs_config: Mapping[str, Any], keys: Sequence[Tuple[int, int]]) -> Dict[str, Any]:
    """What a probability vector depends on: the JTFS configuration and its ordered path keys."""
    return {"jtfs": {k: jtfs_config[k] for k in sorted(jtfs_config)},
            "path_keys": [[int(a), int(b)] for a, b in keys]}


def describe_path_set(keys: Sequence[Sequence[int]]) -> str:
    """``"5 second-order + 3 first-order paths"`` for path keys (first order: ``n2 = -1``)."""
    n_first = sum(1 for key in keys if int(key[0]) < 0)
    return f"{len(keys) - n_first} second-order + {n_first} first-order paths"


def identity_differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> List[str]:
    """Names of the identity entries that differ (JTFS settings by name, then the path set)."""
    differ = []
    found_jtfs, expected_jtfs = dict(found.get("jtfs") or {}), dict(expected.get("jtfs") or {})
    for key in sorted(set(found_jtfs) | set(expected_jtfs)):
        if found_jtfs.get(key) != expected_jtfs.get(key):
            differ.append(f"{key}={found_jtfs.get(key)!r} (expected {expected_jtfs.get(key)!r})")
    found_keys = [list(map(int, k)) for k in found.get("path_keys") or []]
    expected_keys = expected.get("path_keys") or []
    if found_keys != expected_keys:
        differ.append(f"path set ({describe_path_set(found_keys)}, expected {describe_path_set(expected_keys)})")
    return differ


def save_probs(path: str, probs: Tensor, identity: Mapping[str, Any]) -> None:
    """Write ``probs`` with its identity to ``path`` atomically (a reader sees the old or the new file)."""
    payload = {"format": PROBS_FORMAT, "probs": probs.detach().to("cpu", torch.float64).clone(),
               "identity": dict(identity)}
    atomic_save(payload, path)


def load_probs_file(path: str, n_paths: int, identity: Optional[Mapping[str, Any]] = None) -> Tensor:
    """Load a probability vector: a file of :func:`save_probs`, or the reference package's bare tensor.

    Args:
        path: the ``.pt`` file.
        n_paths: the number of paths of the loss.
        identity: the loss's :func:`path_set_identity`; a file written for
            another one is refused.

    Returns:
        The probabilities, a CPU float64 tensor ``(n_paths,)``.

    Raises:
        TypeError: if ``path`` is not a path.
        ValueError: for a missing or unreadable file, another configuration or
            path set, or an invalid distribution.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"probs_path must be a path, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise ValueError(f"probability file {path!r} does not exist")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read probability file {path!r}: {err}") from err
    if isinstance(content, Mapping):
        if content.get("format") != PROBS_FORMAT or "probs" not in content:
            raise ValueError(f"{path!r} is not a path-probability file (expected a tensor or "
                             f"{{'format': {PROBS_FORMAT}, 'probs', 'identity'}})")
        if identity is not None:
            differ = identity_differences(content.get("identity") or {}, identity)
            if differ:
                raise ValueError(f"probability file {path!r} was written for another JTFS configuration or path "
                                 f"set: {'; '.join(differ)}")
        content = content["probs"]
    elif isinstance(content, Tensor) and content.shape != (n_paths,):
        # A bare tensor carries no path set: its length is all that can be checked.
        keys = (identity or {}).get("path_keys")
        expected = describe_path_set(keys) if keys else f"{n_paths} paths"
        raise ValueError(f"probability file {path!r} holds a bare tensor of shape {tuple(content.shape)}, "
                         f"expected ({n_paths},): one probability per path of this loss ({expected})")
    return check_probs(content, n_paths)
