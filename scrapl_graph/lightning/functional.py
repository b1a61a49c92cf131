"""Train a parameter predictor in one call: tensors in, a trained encoder and per-epoch metrics out."""
from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from ..processors._common import check_positive_int
from .callbacks import ThetaISWarmup
from .module import LossSpec, SoundMatching
from .tensors import TensorDataModule

__all__ = ["EpochHistory", "TrainResult", "train_predictor"]

# Trainer arguments that train_predictor sets from its own arguments; trainer_kwargs may not repeat them.
OWN_TRAINER_ARGS = ("accelerator", "callbacks", "default_root_dir", "devices", "enable_checkpointing",
                    "enable_progress_bar", "max_epochs", "max_steps", "use_distributed_sampler")


@dataclass
class TrainResult:
    """What :func:`train_predictor` returns.

    Attributes:
        encoder: the trained encoder (the module given, trained in place).
        model: the :class:`SoundMatching` module that trained it (with the loss and synth).
        history: per-epoch lists, one entry per epoch run in this call: ``"epoch"``
            (1-based), ``"step"`` (training steps so far), ``"train/loss"``
            (mean over the epoch's steps), ``"elapsed_s"`` (seconds of
            fitting, theta-IS warmup included), and what validation logged:
            ``"val/loss"``, the audio distances (``"val/mss"``, ...) and, when
            the validation data carries true thetas, ``"val/theta_l1"`` (theta
            L1 in permille of the ranges, mean over parameters) and
            ``"val/theta_l1/<parameter label>"``; None for an epoch without
            validation (one cut short by ``max_steps``).
        step_losses: the training loss of every step of this call.
        steps: training steps in all (a resumed run counts the checkpoint's).
        epochs: epochs run in all, the last one possibly cut short.
        stopped_early: True if ``max_steps`` or a callback ended training
            before every epoch had run.
        checkpoint: path of the last checkpoint (None without ``root_dir``).
        log_dir: the run's folder (logs, checkpoints, theta-IS values; None without ``root_dir``).
    """

    encoder: nn.Module
    model: SoundMatching
    history: Dict[str, List[Optional[float]]]
    step_losses: List[float]
    steps: int
    epochs: int
    stopped_early: bool
    checkpoint: Optional[str] = None
    log_dir: Optional[str] = None

    def last(self, key: str) -> Optional[float]:
        """The latest value of ``history[key]`` that was measured (None if none was)."""
        values = [v for v in self.history.get(key, []) if v is not None]
        return values[-1] if values else None


class EpochHistory(pl.Callback):
    """Record, after every training epoch, the mean training loss and what validation logged.

    Validation runs before the end of the training epoch (Lightning 2), so
    the row of an epoch holds its own validation metrics; an epoch that
    ended without validation gets none (rather than the previous epoch's).

    Args:
        on_epoch: called with each epoch's row (a dict, see :attr:`TrainResult.history`).

    Raises:
        FloatingPointError: (during fit) if a training loss is NaN or infinite.
    """

    def __init__(self, on_epoch: Optional[Callable[[Dict[str, float]], Any]] = None):
        self.on_epoch = on_epoch
        self.rows: List[Dict[str, float]] = []
        self.step_losses: List[float] = []
        self._epoch_losses: List[float] = []
        self._validated = False

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_losses, self._validated = [], False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        value = float(outputs["loss"] if isinstance(outputs, Mapping) else outputs)
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss became {value} at step {trainer.global_step}")
        self._epoch_losses.append(value)
        self.step_losses.append(value)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        losses = self._epoch_losses
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
               "train/loss": sum(losses) / len(losses) if losses else math.nan,
               "elapsed_s": float(getattr(pl_module, "elapsed_s", math.nan))}
        if self._validated:
            row.update({key: float(value) for key, value in trainer.callback_metrics.items()
                        if key.startswith("val/") and key != "val/elapsed_s"})
        self.rows.append(row)
        if self.on_epoch is not None:
            self.on_epoch(dict(row))

    def history(self) -> Dict[str, List[Optional[float]]]:
        """The rows as ``{key: [value per epoch]}``, None where an epoch lacks the key."""
        keys = list(dict.fromkeys(key for row in self.rows for key in row))
        return {key: [row.get(key) for row in self.rows] for key in keys}


def train_predictor(
    encoder: nn.Module,
    synth: nn.Module,
    loss: LossSpec,
    train_data: Union[Tensor, Sequence[Tensor]],
    val_data: Union[None, Tensor, Sequence[Tensor]] = None,
    *,
    epochs: int = 10,
    max_steps: Optional[int] = None,
    batch_size: int = 16,
    lr: float = 1e-3,
    lr_end: Optional[float] = None,
    weight_decay: float = 0.0,
    val_metrics: Sequence[str] = ("mss",),
    theta_is: Optional[int] = None,
    theta_is_iter: int = 20,
    seed: Optional[int] = 0,
    accelerator: str = "auto",
    devices: Union[int, str, Sequence[int]] = 1,
    root_dir: Optional[str] = None,
    ckpt_path: Optional[str] = None,
    callbacks: Sequence[pl.Callback] = (),
    on_epoch: Optional[Callable[[Dict[str, float]], Any]] = None,
    progress: bool = True,
    trainer_kwargs: Optional[Mapping[str, Any]] = None,
) -> TrainResult:
    r"""Train an encoder that predicts a synth's parameters from audio (a DDSP autoencoder), on Lightning.

    For each batch of audio ``x``: ``theta = encoder(x)``, ``x_hat =
    synth(theta)``, and the encoder follows the gradient of ``loss(x_hat,
    x)``; no true parameter is needed (unsupervised sound matching, paper
    section 3.4). This wraps the tensors in a :class:`TensorDataModule`,
    builds a :class:`SoundMatching` module and runs ``lightning.Trainer.fit``:
    SCRAPL trains with its own optimizer (P-Adam and P-SAGA), other losses
    with AdamW. After each epoch the encoder is validated on ``val_data``:
    the loss, ``val_metrics`` and, when ``val_data`` carries the true thetas,
    the theta L1 per parameter. For configs, files, DDP runs and the paper's
    tasks, ``scrapl-graph fit --config FILE`` runs the same module.

    Args:
        encoder: module mapping audio ``(B, C, L)`` to theta ``(B, n_theta)``.
        synth: the decoder, a :class:`~scrapl_graph.graph.GraphSynth` (not trained).
        loss: registry name, ``{"class_path", "init_args"}`` config or loss module.
        train_data: audio ``(N, C, L)`` or a tuple ``(audio, theta)`` with the
            true thetas ``(N, n_theta)`` (used only by a loss that compares thetas).
        val_data: the same forms, or None (no validation).
        epochs: passes over ``train_data`` (in all, when resuming).
        max_steps: stop after this many steps in all (None: no limit).
        batch_size: examples per batch; the training order is reshuffled
            every epoch from ``seed``.
        lr, lr_end, weight_decay: optimizer settings; with ``lr_end`` the
            learning rate decreases linearly to it over the run.
        val_metrics: audio distances logged in validation, a subset of ``("jtfs", "mss")``.
        theta_is: if set, run the loss's theta-IS warmup on this many
            training examples before the first step (SCRAPL only).
        theta_is_iter: power-iteration steps per path of that warmup.
        seed: seeds Python, NumPy and torch (``lightning.seed_everything``),
            the loss's path draws and the training order; None leaves the
            global generators alone and draws the order's seed from torch.
        accelerator, devices: as for ``lightning.Trainer`` (default: one
            device, a GPU when there is one). Several devices start one
            process per device (run from a script), each returning its own result.
        root_dir: folder of the run's CSV logs, last checkpoint and theta-IS
            values (``root_dir/version_K``). None: nothing is kept on disk.
        ckpt_path: a checkpoint of an earlier run with the same settings to resume from.
        callbacks: further Lightning callbacks (e.g. early stopping).
        on_epoch: called after every epoch with its row of the history (a
            dict, see :attr:`TrainResult.history`), e.g. to print progress.
        progress: show Lightning's progress bar and messages.
        trainer_kwargs: further ``lightning.Trainer`` arguments (``precision``,
            ``strategy``, ``logger``, ...), not those set from the arguments above.

    Returns:
        :class:`TrainResult`.

    Raises:
        TypeError: for an encoder that is not an ``nn.Module``, a synth
            without ``n_theta``, counts that are not integers, data that is
            not tensors, a callback that is not a Lightning callback, or an
            encoder output that is not a float tensor.
        ValueError: for non-positive counts or rates, malformed or mismatched
            tensors, an encoder without trainable parameters or with output of
            the wrong shape, an unknown loss, ``theta_is`` with a loss without
            warmup, or ``trainer_kwargs`` that repeat an argument.
        FloatingPointError: if the training loss becomes NaN or infinite.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
    if not any(p.requires_grad for p in encoder.parameters()):
        raise ValueError("the encoder has no trainable parameters")
    if not callable(synth) or not hasattr(synth, "n_theta"):
        raise TypeError(f"synth must be a differentiable synth with n_theta (a GraphSynth), got {type(synth).__name__}")
    for value, name in ((epochs, "epochs"), (max_steps, "max_steps"), (theta_is, "theta_is"),
                        (theta_is_iter, "theta_is_iter")):
        if value is not None or name in ("epochs", "theta_is_iter"):
            check_positive_int(value, name)
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, pl.Callback):
            raise TypeError(f"callbacks must be lightning.pytorch.Callback instances, got {type(callback).__name__} "
                            "(use on_epoch for a plain function)")
    clashes = sorted(set(trainer_kwargs or {}) & set(OWN_TRAINER_ARGS))
    if clashes:
        raise ValueError(f"trainer_kwargs {clashes} are set by train_predictor's own arguments; pass them there")

    if seed is not None:
        pl.seed_everything(seed, verbose=False)
    order_seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
    data = TensorDataModule(train_data, val_data, batch_size=batch_size, seed=order_seed, n_theta=synth.n_theta)
    if getattr(synth, "num_samples", data.num_samples) != data.num_samples:
        raise ValueError(f"the synth renders {synth.num_samples} samples, the audio has {data.num_samples}")
    check_encoder_output(encoder, data.tables["train"]["audio"][:1], synth.n_theta)

    model = SoundMatching(synth, loss=loss, encoder=encoder, lr=lr, weight_decay=weight_decay, lr_end=lr_end,
                          val_metrics=val_metrics)
    if seed is not None and callable(getattr(model.loss, "manual_seed", None)):
        model.loss.manual_seed(seed)
    if theta_is is not None:
        if not callable(getattr(model.loss, "warmup_lc_hvp", None)):
            raise ValueError(f"theta_is needs a loss with a theta-IS warmup (SCRAPL), got {type(model.loss).__name__}")
        callbacks.append(ThetaISWarmup(n_examples=theta_is, batch_size=min(batch_size, theta_is),
                                       n_iter=theta_is_iter, plot=False))
    history = EpochHistory(on_epoch)
    checkpoint = pl.callbacks.ModelCheckpoint(save_last=True, save_top_k=0) if root_dir is not None else None

    with _run_folder(root_dir) as folder, _quiet(not progress):
        trainer = pl.Trainer(**{
            "logger": pl.loggers.CSVLogger(folder, name="") if root_dir is not None else False,
            # Lightning warns when an epoch has fewer steps than the logging interval.
            "log_every_n_steps": max(1, min(50, len(data.dataset("train")) // batch_size)),
            "enable_model_summary": progress,
            **(trainer_kwargs or {}),
            "accelerator": accelerator, "devices": devices, "max_epochs": epochs,
            "max_steps": -1 if max_steps is None else max_steps, "default_root_dir": folder,
            "callbacks": [history, *callbacks, *([checkpoint] if checkpoint else [])],
            "enable_checkpointing": checkpoint is not None, "enable_progress_bar": progress,
            # The data module splits its resumable order across processes itself.
            "use_distributed_sampler": False,
            # Without validation data, Lightning must not ask for a validation loader.
            **({} if val_data is not None else {"limit_val_batches": 0}),
        })
        trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)

    return TrainResult(
        encoder=encoder, model=model, history=history.history(), step_losses=list(history.step_losses),
        steps=trainer.global_step, epochs=trainer.current_epoch,
        stopped_early=trainer.global_step < epochs * trainer.num_training_batches,
        checkpoint=(checkpoint.last_model_path or None) if checkpoint else None,
        log_dir=trainer.log_dir if root_dir is not None else None)


def check_encoder_output(encoder: nn.Module, audio: Tensor, n_theta: int) -> None:
    """Run the encoder once, in eval mode without gradients, and check it returns ``(B, n_theta)`` floats.

    Raises:
        TypeError: if it returns something other than a floating-point tensor.
        ValueError: if the shape is wrong.
    """
    was_training = encoder.training
    device = next(encoder.parameters()).device
    encoder.eval()
    try:
        with torch.no_grad():
            theta = encoder(audio.to(device))
    finally:
        encoder.train(was_training)
    if not torch.is_tensor(theta) or not theta.is_floating_point():
        raise TypeError(f"the encoder must return a floating-point tensor, got {type(theta).__name__}")
    if tuple(theta.shape) != (audio.shape[0], n_theta):
        raise ValueError(f"the encoder must return theta of shape (batch, {n_theta}) for the synth's n_theta, got "
                         f"{tuple(theta.shape)} for a batch of {audio.shape[0]}")


@contextlib.contextmanager
def _run_folder(root_dir: Optional[str]) -> Iterator[str]:
    """``root_dir``, or a temporary folder removed afterwards (a theta-IS warmup still needs one)."""
    if root_dir is not None:
        yield str(root_dir)
        return
    with tempfile.TemporaryDirectory(prefix="train_predictor_") as folder:
        yield folder


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Hide Lightning's INFO messages (devices, tips) and its data-loader worker advice."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        # The tensors are in memory: worker processes would only copy them.
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        if enabled:
            for logger in loggers:
                logger.setLevel(max(logging.WARNING, logger.level))
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
