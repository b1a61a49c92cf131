"""The sound-matching LightningModule: audio -> encoder -> theta -> synth -> audio, trained with any loss."""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from ..graph.columns import theta_labels
from ..losses import build_loss, scrapl_term_of
from . import random_state
from .metrics import AudioMetrics, theta_l1_permille

log = logging.getLogger(__name__)

LossSpec = Union[str, Mapping[str, Any], nn.Module]


class SoundMatching(pl.LightningModule):
    r"""Unsupervised sound matching (the paper's DDSP autoencoder, section 3.4).

    For a batch of audio ``x``: ``theta_hat = encoder(x)``, ``x_hat =
    synth(theta_hat)``, and the encoder follows the gradient of
    ``loss(x_hat, x)``; a loss with ``compares = "theta"`` (the supervised
    P-loss) gets ``loss(theta_hat, theta)`` instead.

    The optimizer is the loss's own when it has one (SCRAPL: P-Adam and
    P-SAGA in optimizer form, Algorithm 1, with SGD; they see the all-reduced
    gradient under DDP), else AdamW with the paper's settings. A
    :class:`~scrapl_graph.losses.LossSum` holding SCRAPL has the same
    optimizer, with its other terms' gradient added after P-Adam/P-SAGA, and
    the terms of any sum are logged as ``<stage>/loss/<name>`` (unweighted).
    Validation and test log the theta L1 in permille per parameter and its
    mean (when the batch carries theta), the loss, and audio distances;
    evaluation runs on its own random streams (:func:`random_state.isolated`),
    so it draws the same time shifts at every pass and never moves the
    training streams.

    Args:
        synth: the decoder, ``synth(theta (B, n_theta)) -> audio (B, C, N)``
            (a :class:`~scrapl_graph.graph.GraphSynth`; with LightningCLI it is
            the data module's ``synth``).
        loss: a registry name, a ``{"class_path", "init_args"}`` config or a module.
        encoder: audio -> theta; default: the paper's CNN on a constant-Q
            front end, sized from the synth.
        lr, weight_decay, betas: optimizer settings (the paper: 1e-4 or 1e-5,
            0.01, (0.9, 0.999)); ``betas`` apply to AdamW only.
        lr_end: if set, the learning rate decreases linearly to it over the
            run (the paper's TR-808 task: 1e-4 to 1e-5).
        val_metrics, test_metrics: audio distances, a subset of ``("jtfs", "mss")``.
        metric_jtfs: JTFS configuration of the ``"jtfs"`` distance (default:
            the SCRAPL loss's, else the paper's with J fitted to the length).
        eval_seed: seed of the evaluation streams.
        results_file: name of the test results file written to the run's log folder.
    """

    def __init__(self, synth: nn.Module, loss: LossSpec = "scrapl", encoder: Optional[nn.Module] = None,
                 lr: float = 1e-4, weight_decay: float = 0.01, betas: Sequence[float] = (0.9, 0.999),
                 lr_end: Optional[float] = None, val_metrics: Sequence[str] = ("mss",),
                 test_metrics: Sequence[str] = ("jtfs", "mss"), metric_jtfs: Optional[Dict[str, Any]] = None,
                 eval_seed: int = 0, results_file: str = "test_results.json"):
        super().__init__()
        if not callable(synth) or not hasattr(synth, "n_theta"):
            raise TypeError(f"synth must be a differentiable synth with n_theta (a GraphSynth), got "
                            f"{type(synth).__name__}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.synth = synth
        self.loss = build_loss(loss) if isinstance(loss, (str, Mapping)) else loss
        self.encoder = encoder if encoder is not None else default_encoder(synth)
        self.lr, self.weight_decay, self.betas, self.lr_end = float(lr), float(weight_decay), tuple(betas), lr_end
        self.val_metric_names, self.test_metric_names = list(val_metrics), list(test_metrics)
        self.metric_jtfs = metric_jtfs
        self.eval_seed, self.results_file = int(eval_seed), results_file
        self._metrics: Dict[str, AudioMetrics] = {}
        self._test_sums: Dict[str, List[float]] = {}
        self._elapsed_before, self._fit_start = 0.0, None
        self.save_hyperparameters(ignore=["synth", "loss", "encoder"])

    # ------------------------------------------------------------------ clock
    def setup(self, stage: str) -> None:
        # Runs before every fit-start hook, so the clock includes the theta-IS warmup.
        if stage == "fit":
            self._fit_start = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        """Wall-clock seconds of fitting so far (warmup included; summed over resumed runs)."""
        running = 0.0 if self._fit_start is None else time.perf_counter() - self._fit_start
        return self._elapsed_before + running

    # ------------------------------------------------------------------ steps
    @property
    def compares_theta(self) -> bool:
        return getattr(self.loss, "compares", "audio") == "theta"

    def forward(self, audio: Tensor) -> Tensor:
        """theta_hat ``(B, n_theta)`` of audio ``(B, C, N)``."""
        return self.encoder(audio)

    def _loss(self, batch: Mapping[str, Tensor], theta_hat: Tensor, x_hat: Optional[Tensor]) -> Tensor:
        if self.compares_theta:
            if "theta" not in batch:
                raise ValueError("the parameter loss needs batches with true theta (a synthetic data module)")
            return self.loss(theta_hat, batch["theta"])
        return self.loss(x_hat, batch["audio"])

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        audio = batch["audio"]
        theta_hat = self.encoder(audio)
        x_hat = None if self.compares_theta else self.synth(theta_hat)
        value = self._loss(batch, theta_hat, x_hat)
        self.log("train/loss", value, prog_bar=True, batch_size=audio.shape[0])
        self.log_dict({f"train/{k}": v for k, v in self._term_values().items()}, batch_size=audio.shape[0])
        self.log("time/elapsed_s", self.elapsed_s, batch_size=audio.shape[0])
        return value

    def _term_values(self) -> Dict[str, Tensor]:
        """``{"loss/<name>": value}`` of the terms of a sum of losses after its last call (else empty)."""
        return {f"loss/{name}": value for name, value in getattr(self.loss, "last_values", {}).items()}

    def _evaluate(self, batch: Mapping[str, Tensor], batch_idx: int, stage: str) -> Dict[str, Tensor]:
        audio = batch["audio"]
        with random_state.isolated(self.synth, self.eval_seed + batch_idx):
            theta_hat = self.encoder(audio)
            x_hat = self.synth(theta_hat)
            values = {"loss": self._loss(batch, theta_hat, x_hat), **self._term_values()}
            values.update(self._audio_metrics(stage, audio.shape[-1])(x_hat, audio))
        if "theta" in batch:
            per_param = theta_l1_permille(theta_hat, batch["theta"])
            values["theta_l1"] = per_param.mean()
            for label, value in zip(self._theta_labels(), per_param):
                values[f"theta_l1/{label}"] = value
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, batch_size=audio.shape[0],
                      prog_bar=False, sync_dist=True)
        return values

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log("val/elapsed_s", self.elapsed_s)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        values = self._evaluate(batch, batch_idx, "test")
        for key, value in values.items():
            self._test_sums.setdefault(key, []).append(float(value) * batch["audio"].shape[0])
        self._test_sums.setdefault("_count", []).append(float(batch["audio"].shape[0]))

    def on_test_epoch_start(self) -> None:
        self._test_sums = {}

    def on_test_epoch_end(self) -> None:
        """Write the test means (this process's share under DDP) to the run's log folder."""
        count = sum(self._test_sums.pop("_count", [])) or 1.0
        results = {key: sum(values) / count for key, values in self._test_sums.items()}
        results["encoder_weights"] = sum(p.numel() for p in self.encoder.parameters() if p.requires_grad)
        folder = self.trainer.log_dir if self.trainer is not None else None
        if folder and self.trainer.is_global_zero:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, self.results_file), "w") as f:
                json.dump({"n_examples": count, **results}, f, indent=1, sort_keys=True)

    def _audio_metrics(self, stage: str, num_samples: int) -> AudioMetrics:
        key = f"{stage}_{num_samples}"
        if key not in self._metrics:
            names = self.val_metric_names if stage == "val" else self.test_metric_names
            scrapl = scrapl_term_of(self.loss)
            jtfs = self.metric_jtfs or getattr(self.loss if scrapl is None else scrapl, "jtfs_config", None)
            jtfs = {k: v for k, v in (jtfs or {}).items() if k in ("J", "Q1", "Q2", "J_fr", "Q_fr", "T", "F")} or None
            self._metrics[key] = AudioMetrics(names, num_samples, jtfs).to(self.device)
        return self._metrics[key]

    def _theta_labels(self) -> List[str]:
        return theta_labels(self.synth) or [str(u) for u in range(self.synth.n_theta)]

    # ------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        own = getattr(self.loss, "make_optimizer", None)
        if callable(own):
            optimizer = own(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        if self.lr_end is None:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches) - 1)
        ratio = self.lr_end / self.lr
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 + (ratio - 1.0) * min(k, total) / total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint["random_state"] = random_state.capture(self.synth)
        checkpoint["elapsed_s"] = self.elapsed_s

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        if "random_state" in checkpoint:
            random_state.restore(self.synth, checkpoint["random_state"])
        self._elapsed_before = float(checkpoint.get("elapsed_s", 0.0))


def default_encoder(synth: nn.Module) -> nn.Module:
    """The paper's encoder for ``synth``: a CNN on a log1p constant-Q transform (appendix E)."""
    from ..encoders import paper_encoder_for

    return paper_encoder_for(synth)
