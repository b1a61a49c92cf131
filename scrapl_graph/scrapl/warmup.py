"""The theta-IS warmup loop: importance values for a range of paths, resumable and sharded.

The loop knows nothing of the loss: it is given ``path_values(p)``, which
returns the ``(groups, n_theta)`` values of path p (in practice
:func:`scrapl_graph.scrapl.curvature.theta_eigs` bound to a loss), and it
takes care of the path range, the ``torch.distributed`` shards, the files of
the warmup directory (:mod:`scrapl_graph.scrapl.warmup_store`) and the
gathering of all shards' values.
"""
from __future__ import annotations

import logging
import numbers
import os
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from torch import Tensor

from ..io import atomic_save
from . import warmup_store as store

log = logging.getLogger(__name__)


def check_path_range(start: Any, end: Any, n_paths: int) -> range:
    """``range(start, end)`` with ``end=None`` meaning all paths.

    Raises:
        ValueError: unless ``0 <= start < end <= n_paths`` (integers).
    """
    end = n_paths if end is None else end
    ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (start, end))
    if not (ok and 0 <= start < end <= n_paths):
        raise ValueError(f"need 0 <= start_path_idx < end_path_idx <= n_paths={n_paths}, got [{start}, {end})")
    return range(int(start), int(end))


def _values_of(path_idx: int, path_values: Callable[[int], Tensor], save_dir: Optional[str]) -> Tensor:
    if save_dir is not None and os.path.isfile(store.vals_path(save_dir, path_idx)):
        log.info("path %d: values found in %s, skipped", path_idx, save_dir)
        return store.load_vals(save_dir, path_idx)
    vals = path_values(path_idx).abs().detach().cpu()
    if save_dir is not None:
        atomic_save(vals, store.vals_path(save_dir, path_idx))
    log.info("path %d: values %s", path_idx, vals.tolist())
    return vals


def run_warmup(path_values: Callable[[int], Tensor], paths: range, save_dir: Optional[str] = None,
               manifest: Optional[Mapping[str, Any]] = None, distributed: Optional[bool] = None,
               progress: bool = True) -> Dict[int, Tensor]:
    """Importance values ``|path_values(p)|`` of every path in ``paths``.

    With ``save_dir``, each path's values are written atomically next to the
    ``manifest``; paths whose file exists are read instead of computed (an
    interrupted warmup resumes). Under ``torch.distributed`` each rank
    computes a contiguous shard of ``paths`` and the values of all shards are
    gathered, so every rank returns the same dictionary.

    Returns:
        ``{path_idx: (groups, n_theta) values}`` for every path of ``paths``.

    Raises:
        ValueError: for a ``save_dir`` written for another manifest, or
            ``distributed=True`` without a process group.
    """
    rank, world = store.distributed_world(distributed)
    mine = store.shard(paths.start, paths.stop, rank, world)
    log.info("theta-IS warmup: paths [%d, %d) (%d on rank %d of %d)", paths.start, paths.stop, len(mine), rank, world)
    if save_dir is not None:
        store.open_save_dir(save_dir, manifest or {})
    from tqdm.auto import tqdm

    results: Dict[int, Tensor] = {}
    for path_idx in tqdm(mine, desc="theta-IS warmup", unit="path", disable=not progress, leave=False):
        results[path_idx] = _values_of(path_idx, path_values, save_dir)
    if world > 1:
        gathered: List[Optional[dict]] = [None] * world
        torch.distributed.all_gather_object(gathered, results)
        results = {k: v for part in gathered for k, v in part.items()}
    return {p: results[p] for p in paths}  # path order, as a single process would apply them
