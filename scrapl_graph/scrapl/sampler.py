"""Drawing SCRAPL paths: probabilities, seeded draws, visit counts, and rank synchronisation."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import List, Optional

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)


def check_probs(probs: Tensor, n_paths: int, atol: float = 1e-6, min_prob: float = 0.0) -> Tensor:
    """Validate a path distribution and return it as a CPU float64 tensor.

    Raises:
        TypeError: if ``probs`` is not a floating-point tensor.
        ValueError: on a wrong shape, NaN, negative entries, entries below
            ``min_prob``, or a sum other than 1.
    """
    if not isinstance(probs, Tensor) or not probs.is_floating_point():
        raise TypeError(f"path probabilities must be a floating-point tensor, got {type(probs).__name__}"
                        + (f" of dtype {probs.dtype}" if isinstance(probs, Tensor) else ""))
    probs = probs.detach().to("cpu", torch.float64)
    if probs.shape != (n_paths,):
        raise ValueError(f"path probabilities have shape {tuple(probs.shape)}, expected ({n_paths},)")
    if not bool(torch.isfinite(probs).all()):
        raise ValueError("path probabilities contain NaN or Inf")
    if probs.min() < min_prob - atol:
        raise ValueError(f"path probabilities must be >= {min_prob:g}, found {probs.min().item():g}")
    total = probs.sum().item()
    if abs(total - 1.0) > atol:
        raise ValueError(f"path probabilities must sum to 1, they sum to {total:.8g}")
    return probs


def _fresh_generator(seed: Optional[int] = None) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()) if seed is None else int(seed))
    return generator


class PathSampler:
    """Categorical draws of path indices with the reference package's conventions.

    ``draw(seed)`` with a seed reseeds a private CPU generator and draws with
    ``torch.multinomial``, so a seed gives the same path as the reference
    package. Without a seed, training draws continue the sampler's own
    stream: it is seeded from torch's global generator at construction (so
    ``torch.manual_seed`` before building the loss makes runs reproducible),
    reseeded by :meth:`manual_seed`, and saved in the state, so that a
    resumed run draws the same paths as an uninterrupted one. Evaluation
    draws (``consume=False``) come from a second stream that
    :meth:`restart_evaluation` rewinds, so that every evaluation pass sees
    the same paths and training draws are not disturbed.

    Args:
        n_paths: number of paths.
        sample_all_paths_first: visit every path once, in random order, before
            drawing from ``probs``.
        eval_seed: seed of the evaluation stream.
    """

    def __init__(self, n_paths: int, sample_all_paths_first: bool = False, eval_seed: int = 0):
        self.n_paths = n_paths
        self.sample_all_paths_first = sample_all_paths_first
        self.probs = torch.full((n_paths,), 1.0 / n_paths, dtype=torch.float64)
        self.path_counts = defaultdict(int)
        self.unsampled_paths: List[int] = list(range(n_paths))
        self.generator = _fresh_generator()
        self.eval_seed = int(eval_seed)
        self._eval_generator = _fresh_generator(self.eval_seed)
        self._seeded = torch.Generator(device="cpu")

    def manual_seed(self, seed: int) -> None:
        """Restart the training stream from ``seed`` (and rewind the evaluation stream)."""
        self.generator.manual_seed(int(seed))
        self.restart_evaluation()

    def restart_evaluation(self) -> None:
        """Rewind the evaluation stream: the next evaluation pass draws the same paths as the last one."""
        self._eval_generator.manual_seed(self.eval_seed)

    def draw(self, seed: Optional[int] = None, consume: bool = True) -> int:
        """One path index. ``consume=False`` (evaluation) leaves the visit-once queue and training stream alone."""
        if seed is not None:
            gen = self._seeded
            gen.manual_seed(int(seed))
        else:
            gen = self.generator if consume else self._eval_generator
        if self.sample_all_paths_first and self.unsampled_paths and len(self.path_counts) < self.n_paths:
            pick = int(torch.randint(0, len(self.unsampled_paths), (1,), generator=gen).item())
            return self.unsampled_paths.pop(pick) if consume else self.unsampled_paths[pick]
        return int(torch.multinomial(self.probs, num_samples=1, generator=gen).item())

    def count(self, path: int) -> None:
        self.path_counts[path] += 1
        if path in self.unsampled_paths and self.sample_all_paths_first:
            self.unsampled_paths.remove(path)

    def clear(self) -> None:
        """Forget the visits; the probabilities stay."""
        self.path_counts.clear()
        self.unsampled_paths = list(range(self.n_paths))

    def state_dict(self) -> dict:
        return {"probs": self.probs.clone(), "path_counts": dict(self.path_counts),
                "unsampled_paths": list(self.unsampled_paths), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.probs = check_probs(state["probs"], self.n_paths)
        self.path_counts = defaultdict(int, {int(k): int(v) for k, v in state["path_counts"].items()})
        self.unsampled_paths = [int(p) for p in state["unsampled_paths"]]
        self.generator.set_state(state["generator"])


def synchronize_path(path: int, device: torch.device) -> int:
    """With torch.distributed initialized, every rank takes rank 0's path (so gradients average like with like)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return path
    backend_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([path], dtype=torch.long, device=backend_device)
    dist.broadcast(t, src=0)
    return int(t.item())
