"""Train an encoder that predicts a synth's parameters from audio (the DDSP autoencoder of the paper)."""
from __future__ import annotations

import copy
import logging
import math
import numbers
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..graph.columns import ColumnSpec, resolve_columns, theta_labels
from .metrics import normalized_param_error
from .run import (Callback, LossSpec, OptimizerSpec, Run, as_loss, check_audio, check_callbacks, check_positive,
                  mean, prepare_run, progress_bar, resolve_device, run_callbacks)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train_predictor` returns.

    Attributes:
        encoder: the trained encoder (the same module, trained in place).
        history: ``"step_loss"`` (training loss per step); per epoch:
            ``"epoch"``, ``"train_loss"`` (mean over the epoch's steps),
            ``"val_loss"``, ``"val_param_error"`` and
            ``"val_param_error_columns"`` (lists of per-column errors) when
            validation data (with true thetas, for the errors) is given, and
            ``"time"`` (seconds since the start, at the end of the epoch).
        steps: training steps run; ``epochs``: epochs completed or started.
        stopped_early: True if a callback or ``max_steps`` ended training.
        best_epoch: the epoch with the lowest validation parameter error (or
            validation loss when there are no true thetas); None without validation.
        elapsed_s: wall time in seconds.
        loss_name: the training loss's class name; optimizer_name: the optimizer's.
    """

    encoder: nn.Module
    history: Dict[str, list]
    steps: int
    epochs: int
    stopped_early: bool
    best_epoch: Optional[int]
    elapsed_s: float
    loss_name: str
    optimizer_name: str = ""

    @property
    def final_val_param_error(self) -> Optional[float]:
        """The last validation parameter error (None if not measured)."""
        values = self.history.get("val_param_error") or []
        return values[-1] if values else None


def _as_batches(data: Any, name: str, batch_size: int, shuffle: bool, generator: Optional[torch.Generator]):
    """Wrap tensors / datasets in a DataLoader; leave other iterables (DataLoaders, lists of batches) alone."""
    if data is None:
        return None
    if torch.is_tensor(data):
        data = TensorDataset(check_audio(data, name))
    elif isinstance(data, tuple) and data and all(torch.is_tensor(t) for t in data):
        if len(data) > 2:
            raise ValueError(f"{name} as a tuple must be (audio,) or (audio, theta), got {len(data)} tensors")
        check_audio(data[0], f"{name}[0] (audio)")
        if len(data) == 2 and (data[1].ndim != 2 or data[1].shape[0] != data[0].shape[0]):
            raise ValueError(f"{name}[1] (theta) must have shape ({data[0].shape[0]}, n_theta), got {tuple(data[1].shape)}")
        data = TensorDataset(*data)
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        if len(data) == 0:
            raise ValueError(f"{name} is empty")
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Iterable):
        raise TypeError(f"{name} must be an audio tensor, a tuple (audio, theta), a Dataset, a DataLoader "
                        f"or a list of batches, got {type(data).__name__}")
    return data


def _split_batch(batch: Any, name: str) -> Tuple[Tensor, Optional[Tensor]]:
    """A batch as (audio, theta or None): a tensor, a 1- or 2-sequence, or a dict with 'audio' (and 'theta')."""
    if torch.is_tensor(batch):
        audio, theta = batch, None
    elif isinstance(batch, Mapping):
        if "audio" not in batch:
            raise ValueError(f"a {name} batch given as a dict needs an 'audio' key, got {sorted(batch)}")
        audio, theta = batch["audio"], batch.get("theta")
    elif isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        audio, theta = batch[0], batch[1] if len(batch) == 2 else None
    else:
        raise TypeError(f"a {name} batch must be audio, (audio,), (audio, theta) or a dict, got {type(batch).__name__}")
    audio = check_audio(audio, f"{name} audio")
    if theta is not None:
        if not torch.is_tensor(theta) or not theta.is_floating_point():
            raise TypeError(f"{name} theta must be a floating-point tensor, got {type(theta).__name__}")
        if theta.ndim != 2 or theta.shape[0] != audio.shape[0]:
            raise ValueError(f"{name} theta must have shape ({audio.shape[0]}, n_theta), got {tuple(theta.shape)}")
    return audio, theta


def _check_prediction(theta: Any, batch: int, n_theta: Optional[int]) -> Tensor:
    if not torch.is_tensor(theta) or not theta.is_floating_point():
        raise TypeError(f"the encoder must return a floating-point tensor, got {type(theta).__name__}")
    if theta.ndim != 2 or theta.shape[0] != batch or (n_theta is not None and theta.shape[1] != n_theta):
        raise ValueError(f"the encoder must return theta of shape ({batch}, {n_theta or 'n_theta'}), "
                         f"got {tuple(theta.shape)}")
    return theta


def evaluate_predictor(encoder: nn.Module, synth: Callable[[Tensor], Tensor], loss: Callable[..., Tensor],
                       data: Iterable, device: torch.device, columns: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Validation metrics of a predictor: mean loss and parameter errors over ``data``.

    The loss is evaluated in eval mode: a SCRAPL loss then draws one path per
    batch from its evaluation stream, which restarts at every evaluation, so
    that successive evaluations compare the same paths.

    Args:
        encoder, synth, loss: as in :func:`train_predictor` (loss already built).
        data: iterable of batches (see :func:`train_predictor`).
        device: where to evaluate.
        columns: theta columns of the parameter error (default all).

    Returns:
        ``{"loss": float, "param_error": float or None, "param_error_columns": list or None}``
        (errors only when every batch carries true thetas).

    Raises:
        ValueError / TypeError: for malformed batches or encoder outputs.
    """
    was_training = encoder.training
    encoder.eval()
    if isinstance(loss, nn.Module):
        loss.eval()
    total_loss, n_examples, abs_sum, n_with_theta, all_theta = 0.0, 0, None, 0, True
    n_theta = getattr(synth, "n_theta", None)
    try:
        with torch.no_grad():
            for batch in data:
                audio, theta_true = _split_batch(batch, "validation")
                audio = audio.to(device)
                theta = _check_prediction(encoder(audio), audio.shape[0], n_theta)
                estimate = synth(theta)
                value = loss(estimate, audio)
                total_loss += value.item() * audio.shape[0]
                n_examples += audio.shape[0]
                if theta_true is None:
                    all_theta = False
                    continue
                per_column = normalized_param_error(theta, theta_true.to(device), columns, reduce=False)
                abs_sum = per_column * audio.shape[0] if abs_sum is None else abs_sum + per_column * audio.shape[0]
                n_with_theta += audio.shape[0]
    finally:
        encoder.train(was_training)
        if isinstance(loss, nn.Module):
            loss.train()
    if n_examples == 0:
        raise ValueError("the validation data yielded no batch")
    result = {"loss": total_loss / n_examples, "param_error": None, "param_error_columns": None}
    if all_theta and n_with_theta:
        per_column = abs_sum / n_with_theta
        result["param_error"] = per_column.mean().item()
        result["param_error_columns"] = per_column.tolist()
    return result


def train_predictor(
    encoder: nn.Module,
    synth: Callable[[Tensor], Tensor],
    loss: LossSpec,
    train_data: Any,
    val_data: Any = None,
    *,
    epochs: int = 10,
    max_steps: Optional[int] = None,
    batch_size: int = 16,
    lr: float = 1e-3,
    lr_end: Optional[float] = None,
    optimizer: OptimizerSpec = None,
    weight_decay: float = 0.0,
    val_loss: Optional[LossSpec] = None,
    error_columns: ColumnSpec = None,
    restore_best: bool = False,
    device: Union[None, str, torch.device] = None,
    callbacks: Union[Callback, Sequence[Callback]] = (),
    progress: bool = True,
    log_every: int = 50,
    seed: Optional[int] = 0,
) -> TrainResult:
    r"""Train an encoder that predicts a synth's parameters from audio (a DDSP autoencoder).

    For each batch of audio ``x``: ``theta = encoder(x)``, ``x_hat =
    synth(theta)``, and the encoder's weights follow the gradient of
    ``loss(x_hat, x)``; no true parameter is needed to train (unsupervised
    sound matching, paper section 3.4). After each epoch the encoder is
    evaluated on ``val_data``: the validation loss and, when the validation
    batches carry the true thetas, the parameter error
    (:func:`normalized_param_error`, overall and per column).

    With a :class:`~scrapl_graph.losses.SCRAPLLoss`, alone or in a
    :class:`~scrapl_graph.losses.LossSum`, the default optimizer is
    the loss's own (P-Adam and P-SAGA with plain SGD); with another
    optimizer the encoder's parameters are attached to the loss for the run;
    other losses use Adam (see :mod:`scrapl_graph.train.run`). A synth with random time shifts (as the
    chirplet synth's ``max_shift``) gives the paper's misaligned setting.

    Args:
        encoder: module mapping audio ``(B, C, L)`` to theta ``(B, n_theta)``.
        synth: differentiable synth ``theta -> audio (B, C, L)``, e.g. a
            :class:`~scrapl_graph.graph.GraphSynth` (its modules are moved to
            the device; it is not trained).
        loss: registry name, config or loss module (see :func:`optimize_graph`).
        train_data: an audio tensor ``(N, C, L)``, a tuple ``(audio, theta)``
            of tensors, a ``Dataset`` (these three are batched by
            ``batch_size`` and shuffled), or a ``DataLoader`` / list of
            batches, each batch being audio, ``(audio,)``, ``(audio, theta)``
            or a dict with ``"audio"`` (and ``"theta"``). True thetas are
            ignored in training.
        val_data: the same forms (not shuffled), or None.
        epochs: passes over ``train_data``.
        max_steps: stop after this many steps in all (None: no limit).
        batch_size: batch size when wrapping tensors or a Dataset.
        lr, lr_end, optimizer, weight_decay: as in :func:`optimize_graph`
            (optimizer factories receive the encoder's parameters; the linear
            decay spans all training steps, so ``lr_end`` needs ``max_steps``
            or training data with a length).
        val_loss: loss for validation (default: the training loss; a SCRAPL
            loss then draws one path per batch from its evaluation stream,
            the same paths at every evaluation).
        error_columns: theta columns of the validation parameter error
            (see :func:`resolve_columns`; default all).
        restore_best: at the end, load the encoder weights of the best
            validation epoch (see :attr:`TrainResult.best_epoch`).
        device: where to train (default: the device of the encoder's parameters).
        callbacks: callables called after every step with ``{"event": "step",
            "epoch", "step", "loss", "elapsed_s"}`` and after every epoch with
            ``{"event": "epoch", "epoch", "step", "train_loss", "val_loss",
            "val_param_error", "val_param_error_columns", "elapsed_s"}``; a
            truthy return value stops training.
        progress: show a tqdm progress bar.
        log_every: log the training loss (INFO) every this many steps.
        seed: seeds torch's global generator at the start, the shuffling and
            the loss's path draws; None leaves torch's generator alone.

    Returns:
        :class:`TrainResult`.

    Raises:
        TypeError: for an encoder that is not an ``nn.Module``, a
            non-callable synth, data or batches of the wrong type, or an
            encoder output that is not a float tensor.
        ValueError: for non-positive sizes or rates, empty data, audio or
            theta of the wrong shape, an unknown loss, optimizer or device.
        FloatingPointError: if the training loss becomes NaN or infinite.
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
    if not callable(synth):
        raise TypeError(f"synth must be callable (theta -> audio), got {type(synth).__name__}")
    for value, name in ((epochs, "epochs"), (batch_size, "batch_size"), (log_every, "log_every"),
                        (max_steps or 1, "max_steps")):
        check_positive(value, name, numbers.Integral)
    check_positive(lr, "lr")
    callbacks = check_callbacks(callbacks)
    params = [p for p in encoder.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the encoder has no trainable parameters")
    device = resolve_device(device, params[0].device)
    n_theta = getattr(synth, "n_theta", None)
    columns = None
    if error_columns is not None:
        if n_theta is None:
            raise ValueError("error_columns needs a synth with an n_theta attribute (a GraphSynth)")
        columns = resolve_columns(error_columns, n_theta, theta_labels(synth))
    if seed is not None:
        torch.manual_seed(seed)
    shuffle_seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
    train_batches = _as_batches(train_data, "train_data", batch_size, True, torch.Generator().manual_seed(shuffle_seed))
    val_batches = _as_batches(val_data, "val_data", batch_size, False, None)
    encoder.to(device)
    if isinstance(synth, nn.Module):
        synth.to(device)
    total = _total_steps(train_batches, epochs, max_steps)
    with prepare_run(loss, params, optimizer=optimizer, lr=lr, weight_decay=weight_decay, lr_end=lr_end,
                     steps=total, device=device, seed=seed) as run:
        val = run.loss if val_loss is None else as_loss(val_loss)
        if isinstance(val, nn.Module):
            val.to(device)
        fit = _Fit(encoder, synth, run, n_theta, device, callbacks, log_every, max_steps, restore_best)
        fit.train(train_batches, val_batches, val, columns, epochs, total, progress)
    return fit.result()


def _total_steps(batches, epochs: int, max_steps: Optional[int]) -> Optional[int]:
    try:
        total = epochs * len(batches) if hasattr(batches, "__len__") else None
    except TypeError:
        total = None
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    return total


class _Fit:
    """The epochs of a :func:`train_predictor` run: steps, validation, history, best epoch."""

    def __init__(self, encoder: nn.Module, synth, run: Run, n_theta: Optional[int], device: torch.device,
                 callbacks, log_every: int, max_steps: Optional[int], restore_best: bool):
        self.encoder, self.synth, self.run, self.n_theta, self.device = encoder, synth, run, n_theta, device
        self.callbacks, self.log_every, self.max_steps, self.restore_best = callbacks, log_every, max_steps, restore_best
        self.history: Dict[str, list] = {"step_loss": [], "epoch": [], "train_loss": [], "time": []}
        self.step, self.epoch, self.stopped = 0, 0, False
        self.best_epoch, self.best_score, self.best_state = None, math.inf, None
        self.start = time.perf_counter()

    def train(self, train_batches, val_batches, val_loss, columns, epochs: int, total, progress: bool) -> None:
        if val_batches is not None:
            self.history.update(val_loss=[], val_param_error=[], val_param_error_columns=[])
        bar = progress_bar(total, f"train ({self.run.name})", progress)
        try:
            for self.epoch in range(1, epochs + 1):
                losses = self._epoch(train_batches, bar)
                info = self._end_epoch(losses, val_batches, val_loss, columns)
                if run_callbacks(self.callbacks, info):
                    self.stopped = self.stopped or self.epoch < epochs
                if self.stopped:
                    log.info("training stopped at epoch %d, step %d", self.epoch, self.step)
                    break
        finally:
            bar.close()

    def _epoch(self, batches, bar) -> List[float]:
        self.encoder.train()
        losses = []
        for batch in batches:
            audio = _split_batch(batch, "training")[0].to(self.device)

            def compute() -> Tensor:
                theta = _check_prediction(self.encoder(audio), audio.shape[0], self.n_theta)
                return self.run.loss(self.synth(theta), audio)

            self.step += 1
            value = self.run.step(compute, self.step)
            losses.append(value)
            self.history["step_loss"].append(value)
            bar.update(1)
            bar.set_postfix(epoch=self.epoch, loss=f"{value:.4g}")
            if self.step % self.log_every == 0:
                log.info("epoch %d step %d: loss %.6g", self.epoch, self.step, value)
            info = {"event": "step", "epoch": self.epoch, "step": self.step, "loss": value,
                    "elapsed_s": time.perf_counter() - self.start}
            self.stopped = run_callbacks(self.callbacks, info) or (self.max_steps is not None
                                                                  and self.step >= self.max_steps)
            if self.stopped:
                break
        if not losses:
            raise ValueError("train_data yielded no batch")
        return losses

    def _end_epoch(self, losses: List[float], val_batches, val_loss, columns) -> Dict[str, Any]:
        self.history["epoch"].append(self.epoch)
        self.history["train_loss"].append(mean(losses))
        info = {"event": "epoch", "epoch": self.epoch, "step": self.step, "train_loss": mean(losses),
                "val_loss": None, "val_param_error": None, "val_param_error_columns": None}
        if val_batches is not None:
            metrics = evaluate_predictor(self.encoder, self.synth, val_loss, val_batches, self.device, columns=columns)
            for key in ("loss", "param_error", "param_error_columns"):
                self.history[f"val_{key}"].append(metrics[key])
                info[f"val_{key}"] = metrics[key]
            self._keep_best(metrics)
        log.info("epoch %d: train loss %.6g%s", self.epoch, mean(losses), "" if val_batches is None else
                 f", val loss {info['val_loss']:.6g}, val parameter error {info['val_param_error']}")
        info["elapsed_s"] = time.perf_counter() - self.start
        self.history["time"].append(info["elapsed_s"])
        return info

    def _keep_best(self, metrics: Dict[str, Any]) -> None:
        score = metrics["param_error"] if metrics["param_error"] is not None else metrics["loss"]
        if score < self.best_score:
            self.best_epoch, self.best_score = self.epoch, score
            if self.restore_best:
                self.best_state = copy.deepcopy(self.encoder.state_dict())

    def result(self) -> TrainResult:
        if self.restore_best and self.best_state is not None:
            self.encoder.load_state_dict(self.best_state)
            log.info("restored the encoder of epoch %d", self.best_epoch)
        return TrainResult(encoder=self.encoder, history=self.history, steps=self.step, epochs=self.epoch,
                           stopped_early=self.stopped, best_epoch=self.best_epoch,
                           elapsed_s=time.perf_counter() - self.start, loss_name=self.run.name,
                           optimizer_name=type(self.run.optimizer).__name__)
