"""Training loops: optimize a graph's parameters directly, or train a network that predicts them.

Two loops, both usable with any loss of :mod:`scrapl_graph.losses` (a
registry name, a ``{"class_path", "init_args"}`` config or a module):

- :func:`optimize_graph` fits the flat parameter vector theta of a
  :class:`~scrapl_graph.graph.GraphSynth` (or any differentiable synth of
  theta) to one target recording, by gradient descent on theta itself;
- :func:`train_predictor` trains an encoder that maps audio to theta, with
  the synth as a fixed differentiable decoder and the loss between the
  rendered and the input audio (the DDSP autoencoder of the SCRAPL paper,
  section 3.4): ``audio -> encoder -> theta -> synth -> audio_hat``.

With :class:`~scrapl_graph.losses.SCRAPLLoss` both loops follow the reference
package's best practices: the trained tensors are attached to the loss
(``attach_params``), so that ``grad_mult``, P-Adam and P-SAGA transform
their gradients during ``backward``, and the default optimizer is plain SGD
without momentum. Other losses get Adam by default.

Parameter error. The synths of :mod:`scrapl_graph.processors` map each
unconstrained theta entry ``z`` to its physical range through
``sigmoid(z)`` (on a linear or log scale), so ``sigmoid(z)`` in [0, 1] is the
parameter's normalized position in its range. The parameter error reported
here is the paper's "theta_synth L1": the mean absolute difference of these
normalized positions, ``mean |sigmoid(theta) - sigmoid(theta_true)|`` (0 is
exact, 1 the width of the range; the paper quotes it in per mille). For
GRAFX processors that do not squash their parameters with a sigmoid (EQ
log-magnitudes, for instance) it is still a bounded, monotone comparison.
"""
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

from .graph.columns import resolve_columns
from .losses import SCRAPLLoss, build_loss

log = logging.getLogger(__name__)

LossSpec = Union[str, Mapping[str, Any], nn.Module, Callable[[Tensor, Tensor], Tensor]]
OptimizerSpec = Union[None, str, Callable[[List[Tensor]], torch.optim.Optimizer]]
Callback = Callable[[Dict[str, Any]], Optional[bool]]
ColumnSpec = Union[None, Sequence[int], Sequence[str], Tensor, str]

__all__ = [
    "OptimizeResult",
    "TrainResult",
    "normalized_param_error",
    "optimize_graph",
    "evaluate_predictor",
    "resolve_columns",
    "train_predictor",
]


# --------------------------------------------------------------------------- helpers
def normalized_param_error(theta: Tensor, true_theta: Tensor, columns: Optional[Sequence[int]] = None,
                           reduce: bool = True) -> Tensor:
    r"""The paper's parameter error: L1 distance of normalized parameter positions.

    ``err = mean_{b, u} |sigmoid(theta[b, u]) - sigmoid(true_theta[b, u])|``

    over the examples b and the selected columns u of theta.

    Args:
        theta: estimated unconstrained parameters, ``(B, n_theta)``.
        true_theta: the true ones, same shape.
        columns: column indices to compare (default: all).
        reduce: return the mean (a scalar); if False, the mean over examples
            for each selected column, shape ``(n_columns,)``.

    Returns:
        A tensor (no gradient): the error, in [0, 1].

    Raises:
        TypeError: if an argument is not a floating-point tensor.
        ValueError: if the shapes differ or are not 2-D.
    """
    for name, t in (("theta", theta), ("true_theta", true_theta)):
        if not torch.is_tensor(t) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(t).__name__}")
        if t.ndim != 2:
            raise ValueError(f"{name} must have shape (B, n_theta), got {tuple(t.shape)}")
    if theta.shape != true_theta.shape:
        raise ValueError(f"theta {tuple(theta.shape)} and true_theta {tuple(true_theta.shape)} differ in shape")
    with torch.no_grad():
        diff = (torch.sigmoid(theta.detach()) - torch.sigmoid(true_theta.detach().to(theta.device))).abs()
        if columns is not None:
            diff = diff[:, list(columns)]
        return diff.mean() if reduce else diff.mean(dim=0)


def _labels_of(synth: Any) -> Optional[List[str]]:
    layout = getattr(synth, "layout", None)
    return layout.labels() if layout is not None and hasattr(layout, "labels") else None


def _as_loss(loss: LossSpec) -> Callable[..., Tensor]:
    if isinstance(loss, (str, Mapping)):
        return build_loss(loss)
    if isinstance(loss, nn.Module) or callable(loss):
        return loss
    raise TypeError(f"loss must be a registry name, a config mapping or a callable module, got {type(loss).__name__}")


def _loss_name(loss: Any) -> str:
    return type(loss).__name__ if isinstance(loss, nn.Module) else getattr(loss, "__name__", repr(loss))


def _check_positive(value, name: str, kind=numbers.Real) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"{name} must be a positive {'integer' if kind is numbers.Integral else 'number'}, got {value!r}")


def _resolve_device(device, default: torch.device) -> torch.device:
    if device is None:
        return default
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return device


def _make_optimizer(spec: OptimizerSpec, params: List[Tensor], lr: float, weight_decay: float,
                    scrapl: bool) -> torch.optim.Optimizer:
    """None: SGD for SCRAPL (P-Adam / P-SAGA act in the backward pass), Adam otherwise."""
    if spec is None:
        spec = "sgd" if scrapl else "adam"
    if isinstance(spec, str):
        name = spec.lower()
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=weight_decay)
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        raise ValueError(f"unknown optimizer {spec!r}: use 'sgd', 'adam', 'adamw' or a factory params -> Optimizer")
    if callable(spec):
        optimizer = spec(params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"the optimizer factory must return a torch.optim.Optimizer, got {type(optimizer).__name__}")
        return optimizer
    raise TypeError(f"optimizer must be None, a name or a factory params -> Optimizer, got {type(spec).__name__}")


def _linear_decay(optimizer: torch.optim.Optimizer, lr: float, lr_end: Optional[float],
                  steps: Optional[int]) -> Optional[torch.optim.lr_scheduler.LambdaLR]:
    """A scheduler taking every group's learning rate linearly to ``lr_end / lr`` of its start over ``steps``."""
    if lr_end is None:
        return None
    if isinstance(lr_end, bool) or not isinstance(lr_end, numbers.Real) or lr_end < 0:
        raise ValueError(f"lr_end must be a non-negative number, got {lr_end!r}")
    if steps is None:
        raise ValueError("lr_end needs a known number of steps: give max_steps or data with a length")
    ratio = lr_end / lr
    span = max(1, steps - 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 + (ratio - 1.0) * min(k, span) / span)


def _warn_about_scrapl_optimizer(loss: SCRAPLLoss, optimizer: torch.optim.Optimizer) -> None:
    pathwise = loss.use_p_adam or loss.use_p_saga
    if pathwise and not isinstance(optimizer, torch.optim.SGD):
        log.warning("SCRAPL with P-Adam/P-SAGA expects plain SGD (no momentum), got %s: gradients are "
                    "transformed twice", type(optimizer).__name__)
    elif pathwise and any(g.get("momentum", 0) for g in optimizer.param_groups):
        log.warning("SCRAPL with P-Adam/P-SAGA expects SGD without momentum")
    if not loss.use_p_adam and loss.grad_mult != 1.0 and isinstance(optimizer, torch.optim.SGD):
        log.warning("SCRAPL without P-Adam multiplies gradients by grad_mult=%g: scale the SGD learning rate "
                    "down accordingly", loss.grad_mult)


def _run_callbacks(callbacks: Sequence[Callback], info: Dict[str, Any]) -> bool:
    """Call every callback; True if one of them asks to stop (returns a truthy value)."""
    stop = False
    for callback in callbacks:
        if callback(info):
            stop = True
    return stop


def _check_callbacks(callbacks) -> Tuple[Callback, ...]:
    if callable(callbacks):
        callbacks = (callbacks,)
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables info -> Optional[bool], got {type(cb).__name__}")
    return callbacks


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def _check_audio(x: Any, name: str) -> Tensor:
    if not torch.is_tensor(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (batch, channels, samples), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def _loss_value(loss, estimate: Tensor, target: Tensor, seed: Optional[int]) -> Tensor:
    if isinstance(loss, SCRAPLLoss):
        return loss(estimate, target, seed=seed)
    return loss(estimate, target)


# ---------------------------------------------------------------------- optimize_graph
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
        loss_name: the loss's class name.
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

    With a :class:`~scrapl_graph.losses.SCRAPLLoss` the trainable tensor is
    attached to the loss (``attach_params``) for the run, so that its
    ``grad_mult``, P-Adam and P-SAGA act on the gradients, and the default
    optimizer is plain SGD without momentum (as the reference package
    recommends). The target is moved to the device once and the same tensor
    is passed at every step, so SCRAPL's target cache computes each path's
    target coefficients only once. The path of step k is drawn with a seed
    derived from ``seed``, so runs are reproducible. Other losses use Adam by
    default.

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
        optimizer: None (SGD for SCRAPL, Adam otherwise), ``"sgd"``,
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
        seed: seeds torch's global generator at the start and the SCRAPL path
            draws; None leaves both alone.

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
    target = _check_audio(target, "target")
    _check_positive(steps, "steps", numbers.Integral)
    _check_positive(lr, "lr")
    _check_positive(log_every, "log_every", numbers.Integral)
    callbacks = _check_callbacks(callbacks)
    device = _resolve_device(device, target.device)
    loss = _as_loss(loss)
    is_scrapl = isinstance(loss, SCRAPLLoss)

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
    columns = resolve_columns(trainable, theta_init.shape[1], _labels_of(synth))
    measured = columns if error_columns is None else resolve_columns(error_columns, theta_init.shape[1],
                                                                      _labels_of(synth))

    if seed is not None:
        torch.manual_seed(seed)
    if isinstance(synth, nn.Module):
        synth.to(device)
    if isinstance(loss, nn.Module):
        loss.to(device)
        loss.train()
    target = target.detach().to(device)  # one tensor for the whole run: SCRAPL caches its coefficients
    base = theta_init.detach().to(device=device, dtype=target.dtype).clone()
    all_columns = len(columns) == base.shape[1]
    column_index = torch.tensor(columns, device=device)
    free = base[:, columns].clone().requires_grad_(True)

    def current_theta() -> Tensor:
        return free if all_columns else base.index_copy(1, column_index, free)

    opt = _make_optimizer(optimizer, [free], lr, weight_decay, is_scrapl)
    scheduler = _linear_decay(opt, lr, lr_end, steps)
    if is_scrapl:
        _warn_about_scrapl_optimizer(loss, opt)
        loss.attach_params([free])
    path_seeds = None
    if seed is not None:
        path_seeds = torch.randint(0, 2**62, (steps,), generator=torch.Generator().manual_seed(seed)).tolist()

    error = lambda theta: normalized_param_error(theta, true_theta, measured).item()  # noqa: E731
    history: Dict[str, List[float]] = {"step": [], "loss": [], "time": []}
    initial_error = None
    if true_theta is not None:
        history["param_error"] = []
        initial_error = error(base)
    name = _loss_name(loss)
    log.info("optimize_graph: %s, %d of %d theta columns, %d steps, optimizer %s (lr %g) on %s",
             name, len(columns), base.shape[1], steps, type(opt).__name__, lr, device)

    stopped = False
    start = time.perf_counter()
    bar = _progress(steps, f"optimize ({name})", progress)
    try:
        for k in range(1, steps + 1):
            opt.zero_grad(set_to_none=True)
            audio = synth(current_theta())
            if k == 1:
                _check_audio(audio, "synth output")
                if audio.shape != target.shape:
                    raise ValueError(f"the synth renders {tuple(audio.shape)} but target has shape {tuple(target.shape)}")
            value = _loss_value(loss, audio, target, None if path_seeds is None else path_seeds[k - 1])
            if not torch.isfinite(value):
                raise FloatingPointError(f"the loss became {value.item()} at step {k}")
            value.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()

            elapsed = time.perf_counter() - start
            theta_now = current_theta().detach()
            history["step"].append(k)
            history["loss"].append(value.item())
            history["time"].append(elapsed)
            param_error = None
            if true_theta is not None:
                param_error = error(theta_now)
                history["param_error"].append(param_error)
            bar.update(1)
            bar.set_postfix(loss=f"{value.item():.4g}", **({} if param_error is None else {"err": f"{param_error:.3f}"}))
            if k % log_every == 0 or k == steps:
                log.info("step %d/%d: loss %.6g%s", k, steps, value.item(),
                         "" if param_error is None else f", parameter error {param_error:.4f}")
            info = {"step": k, "steps": steps, "loss": value.item(), "param_error": param_error,
                    "theta": theta_now, "elapsed_s": elapsed}
            if _run_callbacks(callbacks, info):
                stopped = k < steps
                if stopped:
                    log.info("stopped by a callback at step %d", k)
                break
    finally:
        bar.close()
        if is_scrapl:
            loss.attach_params([])
    elapsed = time.perf_counter() - start

    theta_final = current_theta().detach()
    final_error = per_column = None
    if true_theta is not None:
        final_error = error(theta_final)
        per_column = normalized_param_error(theta_final, true_theta, measured, reduce=False).tolist()
    return OptimizeResult(theta=theta_final, history=history, trainable_columns=columns, error_columns=measured,
                          initial_param_error=initial_error, final_param_error=final_error,
                          param_error_columns=per_column, steps=len(history["step"]), stopped_early=stopped,
                          elapsed_s=elapsed, loss_name=name)


# --------------------------------------------------------------------- train_predictor
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
        loss_name: the training loss's class name.
    """

    encoder: nn.Module
    history: Dict[str, list]
    steps: int
    epochs: int
    stopped_early: bool
    best_epoch: Optional[int]
    elapsed_s: float
    loss_name: str

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
        data = TensorDataset(_check_audio(data, name))
    elif isinstance(data, tuple) and data and all(torch.is_tensor(t) for t in data):
        if len(data) > 2:
            raise ValueError(f"{name} as a tuple must be (audio,) or (audio, theta), got {len(data)} tensors")
        _check_audio(data[0], f"{name}[0] (audio)")
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
    audio = _check_audio(audio, f"{name} audio")
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
                       data: Iterable, device: torch.device, seed: int = 0,
                       columns: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Validation metrics of a predictor: mean loss and parameter errors over ``data``.

    A SCRAPL loss is evaluated in eval mode on one path per batch, drawn with
    the seed ``seed + batch index``, so that successive evaluations compare
    the same paths.

    Args:
        encoder, synth, loss: as in :func:`train_predictor` (loss already built).
        data: iterable of batches (see :func:`train_predictor`).
        device: where to evaluate.
        seed: base seed of the SCRAPL path draws.
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
            for i, batch in enumerate(data):
                audio, theta_true = _split_batch(batch, "validation")
                audio = audio.to(device)
                theta = _check_prediction(encoder(audio), audio.shape[0], n_theta)
                estimate = synth(theta)
                value = _loss_value(loss, estimate, audio, seed + i)
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

    With a :class:`~scrapl_graph.losses.SCRAPLLoss` the encoder's parameters
    are attached to the loss for the run (P-Adam, P-SAGA and ``grad_mult``
    act on their gradients) and the default optimizer is plain SGD without
    momentum; other losses use Adam. A synth with random time shifts (as the
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
            loss is then evaluated on one seeded path per batch).
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
            the SCRAPL path draws of validation; None leaves torch's generator alone.

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
    _check_positive(epochs, "epochs", numbers.Integral)
    if max_steps is not None:
        _check_positive(max_steps, "max_steps", numbers.Integral)
    _check_positive(batch_size, "batch_size", numbers.Integral)
    _check_positive(lr, "lr")
    _check_positive(log_every, "log_every", numbers.Integral)
    callbacks = _check_callbacks(callbacks)
    params = [p for p in encoder.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the encoder has no trainable parameters")
    device = _resolve_device(device, params[0].device)
    loss = _as_loss(loss)
    val_loss = loss if val_loss is None else _as_loss(val_loss)
    is_scrapl = isinstance(loss, SCRAPLLoss)
    n_theta = getattr(synth, "n_theta", None)
    columns = None
    if error_columns is not None:
        if n_theta is None:
            raise ValueError("error_columns needs a synth with an n_theta attribute (a GraphSynth)")
        columns = resolve_columns(error_columns, n_theta, _labels_of(synth))

    if seed is not None:
        torch.manual_seed(seed)
    shuffle_seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
    shuffle_gen = torch.Generator().manual_seed(shuffle_seed)
    train_batches = _as_batches(train_data, "train_data", batch_size, True, shuffle_gen)
    val_batches = _as_batches(val_data, "val_data", batch_size, False, None)

    encoder.to(device)
    for module in (synth, loss, val_loss):
        if isinstance(module, nn.Module):
            module.to(device)
    if isinstance(loss, nn.Module):
        loss.train()
    opt = _make_optimizer(optimizer, params, lr, weight_decay, is_scrapl)
    if is_scrapl:
        _warn_about_scrapl_optimizer(loss, opt)
        loss.attach_params(params)

    history: Dict[str, list] = {"step_loss": [], "epoch": [], "train_loss": [], "time": []}
    if val_batches is not None:
        history.update(val_loss=[], val_param_error=[], val_param_error_columns=[])
    name = _loss_name(loss)
    try:
        total = epochs * len(train_batches) if hasattr(train_batches, "__len__") else None
    except TypeError:
        total = None
    if max_steps is not None:
        total = max_steps if total is None else min(total, max_steps)
    scheduler = _linear_decay(opt, lr, lr_end, total)
    log.info("train_predictor: %s, %s epochs, optimizer %s (lr %g) on %s", name, epochs, type(opt).__name__, lr, device)

    step, epoch, stopped = 0, 0, False
    best_epoch, best_score, best_state = None, math.inf, None
    start = time.perf_counter()
    bar = _progress(total, f"train ({name})", progress)
    try:
        for epoch in range(1, epochs + 1):
            encoder.train()
            epoch_losses = []
            for batch in train_batches:
                audio, _ = _split_batch(batch, "training")
                audio = audio.to(device)
                opt.zero_grad(set_to_none=True)
                theta = _check_prediction(encoder(audio), audio.shape[0], n_theta)
                value = _loss_value(loss, synth(theta), audio, None)
                if not torch.isfinite(value):
                    raise FloatingPointError(f"the training loss became {value.item()} at step {step + 1}")
                value.backward()
                opt.step()
                if scheduler is not None:
                    scheduler.step()
                step += 1
                epoch_losses.append(value.item())
                history["step_loss"].append(value.item())
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{value.item():.4g}")
                if step % log_every == 0:
                    log.info("epoch %d step %d: loss %.6g", epoch, step, value.item())
                info = {"event": "step", "epoch": epoch, "step": step, "loss": value.item(),
                        "elapsed_s": time.perf_counter() - start}
                if _run_callbacks(callbacks, info):
                    stopped = True
                if max_steps is not None and step >= max_steps:
                    stopped = True
                if stopped:
                    break
            if not epoch_losses:
                raise ValueError("train_data yielded no batch")
            history["epoch"].append(epoch)
            history["train_loss"].append(sum(epoch_losses) / len(epoch_losses))
            info = {"event": "epoch", "epoch": epoch, "step": step, "train_loss": history["train_loss"][-1],
                    "val_loss": None, "val_param_error": None, "val_param_error_columns": None}
            if val_batches is not None:
                metrics = evaluate_predictor(encoder, synth, val_loss, val_batches, device,
                                             seed=0 if seed is None else seed, columns=columns)
                history["val_loss"].append(metrics["loss"])
                history["val_param_error"].append(metrics["param_error"])
                history["val_param_error_columns"].append(metrics["param_error_columns"])
                info.update(val_loss=metrics["loss"], val_param_error=metrics["param_error"],
                            val_param_error_columns=metrics["param_error_columns"])
                score = metrics["param_error"] if metrics["param_error"] is not None else metrics["loss"]
                if score < best_score:
                    best_epoch, best_score = epoch, score
                    if restore_best:
                        best_state = copy.deepcopy(encoder.state_dict())
                log.info("epoch %d: train loss %.6g, val loss %.6g%s", epoch, history["train_loss"][-1],
                         metrics["loss"], "" if metrics["param_error"] is None
                         else f", val parameter error {metrics['param_error']:.4f}")
            else:
                log.info("epoch %d: train loss %.6g", epoch, history["train_loss"][-1])
            elapsed = time.perf_counter() - start
            history["time"].append(elapsed)
            info["elapsed_s"] = elapsed
            if _run_callbacks(callbacks, info):
                stopped = stopped or epoch < epochs
            if stopped:
                log.info("training stopped at epoch %d, step %d", epoch, step)
                break
    finally:
        bar.close()
        if is_scrapl:
            loss.attach_params([])
    if restore_best and best_state is not None:
        encoder.load_state_dict(best_state)
        log.info("restored the encoder of epoch %d", best_epoch)
    return TrainResult(encoder=encoder, history=history, steps=step, epochs=epoch, stopped_early=stopped,
                       best_epoch=best_epoch, elapsed_s=time.perf_counter() - start, loss_name=name)
