"""Run configs: a graph, a loss and the thetas of an experiment, read from one file."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping

from ..graph import resolve_columns
from ..io import load_config
from ..losses import build_loss
from .checks import _prefixed
from .graph_config import build_graph_synth
from .theta_spec import theta_from_spec

log = logging.getLogger(__name__)

__all__ = ["RUN_KEYS", "load_run_config"]

#: Top-level keys of a run config.
RUN_KEYS = ("graph", "loss", "target_theta", "theta_init", "trainable")


def _build_run(config: Mapping[str, Any]) -> Dict[str, Any]:
    synth = build_graph_synth(config["graph"])
    loss = build_loss(config["loss"])  # its errors start with "loss"
    thetas = {}
    for key in ("target_theta", "theta_init"):
        value = config.get(key)
        try:
            thetas[key] = None if value is None else theta_from_spec(synth, value)
        except (ValueError, TypeError) as err:
            raise _prefixed(err, key) from None
    trainable = config.get("trainable")
    if trainable is not None:
        try:
            trainable = resolve_columns(trainable, synth.n_theta, synth.layout.labels())
        except (ValueError, TypeError) as err:
            raise _prefixed(err, "trainable") from None
    return {"synth": synth, "loss": loss, **thetas, "trainable": trainable}


def load_run_config(path: str) -> Dict[str, Any]:
    """Read a run config (``.yaml``, ``.yml`` or ``.json``) and build its objects.

    Top-level keys: ``graph`` (a graph config, see :func:`build_graph_synth`),
    ``loss`` (a registry name such as ``"scrapl"`` or a ``class_path`` spec,
    built through jsonargparse by :func:`~scrapl_graph.losses.build_loss`),
    and the optional ``target_theta`` and ``theta_init`` (see
    :func:`theta_from_spec`) and ``trainable`` (layout labels, node types or
    parameter names, see :func:`~scrapl_graph.graph.resolve_columns`).

    Args:
        path: the config file.

    Returns:
        ``{"synth": GraphSynth, "loss": nn.Module, "target_theta": Tensor (1, n_theta) or None,
        "theta_init": Tensor (1, n_theta) or None, "trainable": sorted column indices or None}``
        (``None`` where the key is absent or null).

    Raises:
        ValueError: for a missing or unreadable file, unknown or missing
            top-level keys, and every error of the parts (prefixed with the
            file and the key).
        TypeError: for a file that is not a mapping, and ill-typed parts.
    """
    config = load_config(path)
    if not isinstance(config, Mapping):
        raise TypeError(f"{path}: a run config must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(RUN_KEYS), key=str)
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; allowed: {list(RUN_KEYS)}")
    missing = [key for key in ("graph", "loss") if key not in config]
    if missing:
        raise ValueError(f"{path}: missing top-level key(s) {missing}")
    try:
        run = _build_run(config)
    except (ValueError, TypeError) as err:
        raise _prefixed(err, path) from None
    log.info("loaded run config %s: n_theta=%d, loss %s", path, run["synth"].n_theta, type(run["loss"]).__name__)
    return run
