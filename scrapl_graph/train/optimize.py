"""Fit a graph's parameters to one target recording by gradient descent on theta."""
from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..graph.columns import ColumnSpec, resolve_columns, theta_labels
from .metrics import normalized_param_error
from .run import (Callback, LossSpec, OptimizerSpec, Run, check_audio, check_callbacks, check_positive,
                  prepare_run, progress_bar, resolve_device, run_callbacks)

log = logging.getLogger(__name__)


@dataclass
class OptimizeResult:
    """What :func:`optimize_graph` returns.

    Attributes:
        theta: the final parameters, ``(B, n_theta)`` (detached, on the run's device).
        history: per-step lists: ``"step"`` (1-based), ``"loss"`` (the loss
            at the theta of that step), ``"param_error"`` (after the step's
            update; only with ``true_theta``) and ``"time"`` (seconds since
            the start, after the step).
        trainable_columns: the columns of theta that were optimized.
        error_columns: the columns the parameter error is measured on.
        initial_param_error: the parameter error of ``theta_init`` (None
            without ``true_theta``).
        final_param_error: the parameter error of ``theta`` (None without ``true_theta``).
        param_error_columns: the final error of each column of
            ``error_columns``, in that order (None without ``true_theta``).
        steps: steps run; ``stopped_early``: True if a callback stopped the run.
        elapsed_s: wall time of the loop in seconds.
        loss_name: the loss's class name; optimizer_name: the optimizer's.
    """

    theta: Tensor
    history: Dict[str, List[float]]
    trainable_columns: List[int]
    error_columns: List[int]
    initial_param_error: Optional[float]
    final_param_error: Optional[float]
    param_error_columns: Optional[List[float]]
    steps: int
    stopped_early: bool
    elapsed_s: float
    loss_name: str
    optimizer_name: str = ""

    @property
    def final_loss(self) -> float:
        """The loss of the last step (NaN if no step ran)."""
        return self.history["loss"][-1] if self.history["loss"] else math.nan


def optimize_graph(
    synth: Callable[[Tensor], Tensor],
    target: Tensor,
    loss: LossSpec,
    theta_init: Optional[Tensor] = None,
    *,
    trainable: ColumnSpec = None,
    error_columns: ColumnSpec = None,
    steps: int = 200,
    lr: float = 0.05,
    lr_end: Optional[float] = None,
    optimizer: OptimizerSpec = None,
    weight_decay: float = 0.0,
    device: Union[None, str, torch.device] = None,
    true_theta: Optional[Tensor] = None,
    callbacks: Union[Callback, Sequence[Callback]] = (),
    progress: bool = True,
    log_every: int = 50,
    seed: Optional[int] = 0,
) -> OptimizeResult:
    r"""Fit a graph's parameters to a target recording by gradient descent on theta.

    Each step renders ``audio = synth(theta)``, evaluates
    ``loss(audio, target)`` and updates the trainable columns of theta (a
    leaf tensor; the other columns stay at ``theta_init``).

    With a :class:`~scrapl_graph.losses.SCRAPLLoss`, alone or in a
    :class:`~scrapl_graph.losses.LossSum`, the default optimizer is
    the loss's own (P-Adam and P-SAGA with plain SGD, Algorithm 1); with
    another optimizer the trainable tensor is attached to the loss for the
    run (see :mod:`scrapl_graph.train.run`). The target is moved to the
    device once and the same tensor is passed at every step, so SCRAPL's
    target cache computes each path's target coefficients only once. The
    loss's path draws are seeded from ``seed``, so runs are reproducible.
    Other losses use Adam by default.

    Args:
        synth: a differentiable synth of theta: ``synth(theta (B, n_theta)) ->
            audio (B, C, L)``, e.g. a :class:`~scrapl_graph.graph.GraphSynth`.
            Its own randomness (a chirplet's random time shift, say) is left
            as configured: a new draw per step gives the paper's misaligned
            ("meso") setting, a deterministic synth the aligned one.
        target: the recording to match, ``(B, C, L)``, same shape as the synth's output.
        loss: a registry name (``"mss"``, ``"scrapl"``, ...), a config
            ``{"class_path", "init_args"}`` or a loss module called as
            ``loss(estimate, target)``. Registry SCRAPL / JTFS defaults are the
            paper's (J=12): for short signals pass a config with ``2**J <= L``.
        theta_init: the starting parameters ``(B, n_theta)``; default zeros
            (the middle of every sigmoid-mapped range).
        trainable: the columns of theta to optimize (see :func:`resolve_columns`:
            indices, a boolean mask, or names such as ``"chirplet"`` or
            ``"theta_am"``); default all.
        error_columns: the columns of the parameter error (same forms);
            default the trainable columns.
        steps: number of gradient steps.
        lr: learning rate of the default optimizer.
        lr_end: if given, the learning rate decreases linearly from ``lr``
            (first step) to ``lr_end`` (last step); applies to any optimizer.
        optimizer: None (the loss's own for SCRAPL, Adam otherwise), ``"sgd"``,
            ``"adam"``, ``"adamw"``, or a factory ``params -> Optimizer``.
        weight_decay: weight decay of the named optimizers.
        device: where to run (default: the target's device).
        true_theta: the true parameters ``(B, n_theta)``, when known: the
            parameter error (see :func:`normalized_param_error`) of the
            ``error_columns`` is then recorded after every step.
        callbacks: callables called after every step with a dict
            ``{"step", "steps", "loss", "param_error", "theta", "elapsed_s"}``
            (``theta`` detached, full width); a truthy return value stops
            the run.
        progress: show a tqdm progress bar.
        log_every: log the loss (INFO) every this many steps.
        seed: seeds torch's global generator at the start and the loss's path
            draws (``manual_seed``); None leaves both alone.

    Returns:
        :class:`OptimizeResult`.

    Raises:
        TypeError: for arguments of the wrong type (a non-tensor target, an
            integer theta, a non-callable synth or loss, ...).
        ValueError: for inconsistent shapes (theta vs. the synth's
            ``n_theta``, audio vs. target), non-positive steps or learning
            rate, an unknown loss, optimizer or device, or an empty column
            selection.
        FloatingPointError: if the loss becomes NaN or infinite.
    """
    if not callable(synth):
        raise TypeError(f"synth must be callable (theta -> audio), got {type(synth).__name__}")
    target = check_audio(target, "target")
    check_positive(steps, "steps", numbers.Integral)
    check_positive(lr, "lr")
    check_positive(log_every, "log_every", numbers.Integral)
    callbacks = check_callbacks(callbacks)
    device = resolve_device(device, target.device)
    theta_init, true_theta = _check_thetas(synth, target, theta_init, true_theta, device)
    labels = theta_labels(synth)
    columns = resolve_columns(trainable, theta_init.shape[1], labels)
    measured = columns if error_columns is None else resolve_columns(error_columns, theta_init.shape[1], labels)
    if seed is not None:
        torch.manual_seed(seed)
    if isinstance(synth, nn.Module):
        synth.to(device)
    target = target.detach().to(device)  # one tensor for the whole run: SCRAPL caches its coefficients
    theta = _TrainableTheta(theta_init.detach().to(device=device, dtype=target.dtype), columns)
    with prepare_run(loss, [theta.free], optimizer=optimizer, lr=lr, weight_decay=weight_decay, lr_end=lr_end,
                     steps=steps, device=device, seed=seed) as run:
        tracker = _Tracker(true_theta, measured, steps, callbacks, log_every)
        tracker.initial = tracker.error(theta.full())
        log.info("optimize_graph: %s, %d of %d theta columns, %d steps", run.name, len(columns),
                 theta_init.shape[1], steps)
        _loop(run, synth, target, theta, tracker, progress)
    return tracker.result(theta.full().detach(), columns, measured, run)


def _loop(run: Run, synth, target: Tensor, theta: "_TrainableTheta", tracker: "_Tracker", progress: bool) -> None:
    """The step loop: render, compare, update, record; stops early when a callback asks."""
    bar = progress_bar(tracker.steps, f"optimize ({run.name})", progress)
    try:
        for k in range(1, tracker.steps + 1):
            def compute() -> Tensor:
                audio = synth(theta.full())
                if k == 1:
                    check_audio(audio, "synth output")
                    if audio.shape != target.shape:
                        raise ValueError(f"the synth renders {tuple(audio.shape)} but target has shape "
                                         f"{tuple(target.shape)}")
                return run.loss(audio, target)

            value = run.step(compute, k)
            if tracker.record(k, value, theta.full().detach(), bar):
                break
    finally:
        bar.close()


class _TrainableTheta:
    """The leaf tensor of the trainable columns and the full theta it is written into."""

    def __init__(self, base: Tensor, columns: List[int]):
        self.base = base.clone()
        self.all_columns = len(columns) == base.shape[1]
        self.index = torch.tensor(columns, device=base.device)
        self.free = base[:, columns].clone().requires_grad_(True)

    def full(self) -> Tensor:
        return self.free if self.all_columns else self.base.index_copy(1, self.index, self.free)


class _Tracker:
    """History, parameter errors, logging and callbacks of an :func:`optimize_graph` run."""

    def __init__(self, true_theta: Optional[Tensor], measured: List[int], steps: int, callbacks, log_every: int):
        self.true_theta, self.measured, self.steps = true_theta, measured, steps
        self.callbacks, self.log_every = callbacks, log_every
        self.history: Dict[str, List[float]] = {"step": [], "loss": [], "time": []}
        if true_theta is not None:
            self.history["param_error"] = []
        self.initial: Optional[float] = None
        self.stopped = False
        self.start = time.perf_counter()

    def error(self, theta: Tensor) -> Optional[float]:
        if self.true_theta is None:
            return None
        return normalized_param_error(theta, self.true_theta, self.measured).item()

    def record(self, k: int, value: float, theta: Tensor, bar) -> bool:
        """Record step k; True when a callback asks to stop."""
        elapsed = time.perf_counter() - self.start
        for key, item in (("step", k), ("loss", value), ("time", elapsed)):
            self.history[key].append(item)
        param_error = self.error(theta)
        if param_error is not None:
            self.history["param_error"].append(param_error)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4g}", **({} if param_error is None else {"err": f"{param_error:.3f}"}))
        if k % self.log_every == 0 or k == self.steps:
            log.info("step %d/%d: loss %.6g%s", k, self.steps, value,
                     "" if param_error is None else f", parameter error {param_error:.4f}")
        info = {"step": k, "steps": self.steps, "loss": value, "param_error": param_error, "theta": theta,
                "elapsed_s": elapsed}
        if run_callbacks(self.callbacks, info):
            self.stopped = k < self.steps
            if self.stopped:
                log.info("stopped by a callback at step %d", k)
            return True
        return False

    def result(self, theta: Tensor, columns: List[int], measured: List[int], run: Run) -> OptimizeResult:
        per_column = None
        if self.true_theta is not None:
            per_column = normalized_param_error(theta, self.true_theta, measured, reduce=False).tolist()
        return OptimizeResult(theta=theta, history=self.history, trainable_columns=columns, error_columns=measured,
                              initial_param_error=self.initial, final_param_error=self.error(theta),
                              param_error_columns=per_column, steps=len(self.history["step"]),
                              stopped_early=self.stopped, elapsed_s=time.perf_counter() - self.start,
                              loss_name=run.name, optimizer_name=type(run.optimizer).__name__)


def _check_thetas(synth, target: Tensor, theta_init: Optional[Tensor], true_theta: Optional[Tensor],
                  device: torch.device) -> Tuple[Tensor, Optional[Tensor]]:
    n_theta = getattr(synth, "n_theta", None)
    if theta_init is None:
        if n_theta is None:
            raise ValueError("theta_init is required when the synth has no n_theta attribute")
        theta_init = torch.zeros(target.shape[0], n_theta, dtype=target.dtype)
    if not torch.is_tensor(theta_init) or not theta_init.is_floating_point():
        raise TypeError(f"theta_init must be a floating-point torch.Tensor, got {type(theta_init).__name__}")
    if theta_init.ndim != 2 or (n_theta is not None and theta_init.shape[1] != n_theta):
        raise ValueError(f"theta_init must have shape (B, {n_theta if n_theta is not None else 'n_theta'}), "
                         f"got {tuple(theta_init.shape)}")
    if theta_init.shape[0] != target.shape[0]:
        raise ValueError(f"theta_init has {theta_init.shape[0]} rows but target has batch size {target.shape[0]}")
    if true_theta is not None:
        if not torch.is_tensor(true_theta) or not true_theta.is_floating_point():
            raise TypeError(f"true_theta must be a floating-point torch.Tensor, got {type(true_theta).__name__}")
        if true_theta.shape != theta_init.shape:
            raise ValueError(f"true_theta must have the shape of theta {tuple(theta_init.shape)}, "
                             f"got {tuple(true_theta.shape)}")
        true_theta = true_theta.detach().to(device)
    return theta_init, true_theta
