"""theta-IS warmup as a Lightning callback: path probabilities before the first training step."""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import lightning.pytorch as pl
import torch

from ..losses import scrapl_term_of
from . import random_state

log = logging.getLogger(__name__)


class ThetaISWarmup(pl.Callback):
    r"""Run the loss's theta-IS warmup (paper, section 3.4) at fit start, on ``n_examples`` training examples.

    The loss is the module's SCRAPL loss, alone or the SCRAPL term of a
    :class:`~scrapl_graph.losses.LossSum` (the curvature is that of the
    SCRAPL paths; the other terms take no part in it).

    The encoder is the ``theta_fn`` (in eval mode: no dropout), its weights
    the parameters, and the model's synth the ``synth_fn`` with its random
    draws frozen for the warmup (the curvature needs a deterministic synth).
    Under DDP the paths are sharded across ranks and every rank ends with
    the same probabilities. The values are stored in ``<log dir>/<subdir>``,
    so an interrupted warmup resumes where it stopped; a run resumed from a
    checkpoint skips the warmup (its probabilities are in the loss's state).
    The time taken is logged as ``theta_is/seconds`` and kept in
    :attr:`seconds`, for wall-clock comparisons that include it.

    Args:
        n_examples: N_IS (the paper: 320 granular, 32 chirplet, 16 TR-808).
        batch_size: examples per curvature batch (the values of several
            batches are summed, as in the paper).
        n_iter: power-iteration steps per path (the paper: 20).
        agg: how parameter groups combine (see ``SCRAPLLoss.warmup_lc_hvp``).
        subdir: folder of the values inside the run's log folder.
        plot: also write ``path_probs.png`` there (needs ``sample_rate`` on the data module).
        exclude: name prefixes of encoder parameters left out of the curvature, e.g. ``["jtfs."]``
            for a learnable scattering front end, whose curvature costs a JTFS backward pass
            per power-iteration step (about 3 s per path on a 2-core CPU at 8192 samples).
    """

    def __init__(self, n_examples: int = 32, batch_size: int = 32, n_iter: int = 20, agg: str = "none",
                 subdir: str = "theta_is", plot: bool = True, exclude: Sequence[str] = ()):
        if n_examples < 1 or batch_size < 1 or n_iter < 1:
            raise ValueError(f"n_examples, batch_size and n_iter must be >= 1, got {n_examples}, {batch_size}, "
                             f"{n_iter}")
        self.n_examples, self.batch_size, self.n_iter, self.agg = n_examples, batch_size, n_iter, agg
        self.subdir, self.plot, self.exclude = subdir, plot, tuple(exclude)
        self.seconds: Optional[float] = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = getattr(pl_module, "loss", None)
        scrapl = scrapl_term_of(loss)
        loss = loss if scrapl is None else scrapl
        if not callable(getattr(loss, "warmup_lc_hvp", None)):
            log.info("theta-IS warmup skipped: the loss (%s) has no warmup", type(loss).__name__)
            return
        if trainer.ckpt_path is not None:
            log.info("theta-IS warmup skipped: resuming from %s, whose loss state holds the probabilities",
                     trainer.ckpt_path)
            return
        start = time.perf_counter()
        save_dir = os.path.join(trainer.log_dir or ".", self.subdir)
        batches = warmup_batches(trainer, pl_module, self.n_examples, self.batch_size)
        was_training = pl_module.training
        pl_module.eval()
        frozen = _FrozenDraws(pl_module.synth)
        try:
            loss.warmup_lc_hvp(theta_fn=lambda x: pl_module.encoder(x), synth_fn=pl_module.synth,
                               theta_fn_kwargs=[{"x": b["audio"]} for b in batches],
                               params=[p for name, p in pl_module.encoder.named_parameters()
                                       if p.requires_grad and not name.startswith(self.exclude)],
                               save_dir=save_dir, n_iter=self.n_iter, agg=self.agg, progress=False)
        finally:
            frozen.restore()
            pl_module.train(was_training)
        self.seconds = time.perf_counter() - start
        log.info("theta-IS warmup: %d paths in %.1f s, values in %s", loss.n_paths, self.seconds, save_dir)
        if trainer.logger is not None:
            trainer.logger.log_metrics({"theta_is/seconds": self.seconds}, step=0)
        sample_rate = getattr(trainer.datamodule, "sample_rate", None)
        if self.plot and trainer.is_global_zero and sample_rate:
            loss.plot_probs(os.path.join(save_dir, "path_probs.png"), sample_rate=sample_rate)

    def state_dict(self) -> Dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.seconds = state_dict.get("seconds")


def warmup_batches(trainer: pl.Trainer, pl_module: pl.LightningModule, n_examples: int,
                   batch_size: int) -> List[Dict[str, torch.Tensor]]:
    """The first ``n_examples`` training examples, rendered on the module's device, in batches.

    Uses the data module's ``warmup_batches(n_examples, batch_size, device)``
    when it has one (a fixed, order-independent choice of examples).

    Raises:
        ValueError: without a data module that provides the examples.
    """
    datamodule = trainer.datamodule
    provider = getattr(datamodule, "warmup_batches", None)
    if not callable(provider):
        raise ValueError("the theta-IS warmup needs a data module with warmup_batches(n_examples, batch_size, "
                         "device)")
    with torch.no_grad():
        return provider(n_examples, batch_size, pl_module.device)


class _FrozenDraws:
    """The synth's random sources reset to their seeds before every call (deterministic), then undone."""

    def __init__(self, synth: torch.nn.Module):
        self.synth = synth
        self.sources = random_state.random_sources(synth)
        self.flags = [s.deterministic for s in self.sources]
        self.saved = random_state.capture(synth)
        for source in self.sources:
            source.deterministic = True

    def restore(self) -> None:
        for source, flag in zip(self.sources, self.flags):
            source.deterministic = flag
        random_state.restore(self.synth, self.saved)
