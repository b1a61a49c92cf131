"""Random streams of a run: capture, restore, and keep evaluation from consuming them.

A bit-exact resume needs every stream a run draws from: torch's global
generators (CPU and CUDA), Python's and NumPy's, and the private generators of
the synth processors (:class:`scrapl_graph.processors.RandomSource`: random
time shifts, grains). The SCRAPL sampler's stream lives in the loss's state
and the data order in the data loader's.
"""
from __future__ import annotations

import contextlib
import random
from typing import Any, Dict, Iterator, List

import numpy as np
import torch
from torch import nn

from ..processors import RandomSource


def random_sources(module: nn.Module) -> List[RandomSource]:
    """The processors' private random sources inside ``module``, in module order."""
    return [m.random for m in module.modules() if isinstance(getattr(m, "random", None), RandomSource)]


def capture(module: nn.Module) -> Dict[str, Any]:
    """Every stream's state: global torch (CPU, CUDA), Python, NumPy, and the module's random sources."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # Tensors and plain values only, so that checkpoints load with weights_only=True.
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
             "sources": [source.generator.get_state() for source in random_sources(module)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(module: nn.Module, state: Dict[str, Any]) -> None:
    """Undo everything drawn since :func:`capture`.

    Raises:
        ValueError: if the module holds another number of random sources.
    """
    sources = random_sources(module)
    if len(state["sources"]) != len(sources):
        raise ValueError(f"the saved random state has {len(state['sources'])} processor streams, the synth has "
                         f"{len(sources)}: it was saved for another graph")
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    for source, saved in zip(sources, state["sources"]):
        source.generator.set_state(saved)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def isolated(module: nn.Module, seed: int) -> Iterator[None]:
    """Run a block on fresh streams seeded by ``seed`` and leave every stream as it was.

    Evaluation uses it, so that validation draws the same time shifts at every
    pass and never moves the training streams (a run with more or fewer
    validations, or a resumed run, trains on the same draws).
    """
    saved = capture(module)
    torch.manual_seed(seed)
    for i, source in enumerate(random_sources(module)):
        source.generator.manual_seed(seed + 7919 * (i + 1))
    try:
        yield
    finally:
        restore(module, saved)
