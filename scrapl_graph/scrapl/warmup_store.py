"""The theta-IS warmup directory: a manifest, one atomic values file per path, resume and sharding.

Layout of a warmup directory::

    warmup.json      what the values depend on (JTFS config, path keys, n_theta,
                     loss settings, power-iteration settings, parameter shapes)
    vals_<p>.pt      the (groups, n_theta) importance values of path p
    probs.pt         the path probabilities, once every path is done

Each file is written atomically (a reader sees the old file or the complete
new one), so an interrupted warmup resumes by skipping the paths whose values
exist, and several shards may fill one directory at once.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..io import atomic_save
from .probs_file import identity_differences

log = logging.getLogger(__name__)

MANIFEST_NAME = "warmup.json"
MANIFEST_FORMAT = 1


def vals_path(save_dir: str, path_idx: int) -> str:
    return os.path.join(save_dir, f"vals_{path_idx}.pt")


def load_vals(save_dir: str, path_idx: int) -> Tensor:
    return torch.load(vals_path(save_dir, path_idx), map_location="cpu", weights_only=True)


def present_paths(save_dir: str, n_paths: int) -> List[int]:
    """The paths whose values are in ``save_dir``."""
    return [i for i in range(n_paths) if os.path.isfile(vals_path(save_dir, i))]


def distributed_world(distributed: Optional[bool]) -> Tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) when not sharding.

    Raises:
        ValueError: if ``distributed=True`` without an initialized process group.
    """
    initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed and not initialized:
        raise ValueError("distributed=True needs an initialized torch.distributed process group "
                         "(launch with torchrun and call init_process_group first)")
    if distributed is False or not initialized:
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def shard(start: int, end: int, rank: int, world: int) -> range:
    """Contiguous, disjoint, near-equal ranges of [start, end), one per rank."""
    n = end - start
    return range(start + (n * rank) // world, start + (n * (rank + 1)) // world)


def open_save_dir(save_dir: str, manifest: Mapping[str, Any]) -> None:
    """Create ``save_dir`` with its manifest, or check that its manifest matches.

    Raises:
        ValueError: if the directory was written for another configuration, or
            holds values without a manifest.
    """
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, MANIFEST_NAME)
    expected = json.loads(json.dumps(dict(manifest)))
    if os.path.isfile(path):
        with open(path) as f:
            found = json.load(f)
        differ = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        if differ:
            raise ValueError(f"warmup directory {save_dir!r} was written for another configuration or path "
                             f"set (differs in: {', '.join(differ)}); use another save_dir or remove it")
        return
    if any(name.startswith("vals_") for name in os.listdir(save_dir)):
        raise ValueError(f"warmup directory {save_dir!r} holds values but no {MANIFEST_NAME}: it was not "
                         f"written by this warmup; use another save_dir")
    # Several ranks may get here at once: they write the same content, atomically.
    atomic_save(expected, path)


def check_warmup_dir(warmup_dir: str, identity: Mapping[str, Any], n_theta: int) -> None:
    """Refuse a directory written for another path set or ``n_theta``; accept one without manifest (with a warning).

    Raises:
        ValueError: for a missing directory or a mismatched manifest.
    """
    if not os.path.isdir(warmup_dir):
        raise ValueError(f"warmup directory {warmup_dir!r} does not exist")
    path = os.path.join(warmup_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        log.warning("warmup directory %s has no %s; assuming it matches this loss", warmup_dir, MANIFEST_NAME)
        return
    with open(path) as f:
        found = json.load(f)
    differ = identity_differences(found, identity)
    if found.get("n_theta") != n_theta:
        differ.append(f"n_theta={found.get('n_theta')} (expected {n_theta})")
    if differ:
        raise ValueError(f"warmup directory {warmup_dir!r} was written for another path set or n_theta: "
                         f"{'; '.join(differ)}")
