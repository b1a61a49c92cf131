"""A loss and its optimizer prepared for a run, and one gradient step (used by :func:`.optimize.optimize_graph`).

:func:`prepare_run` is the one place where a loss meets a run. A loss may
offer, by duck typing (SCRAPL does; a weighted sum of losses can delegate):

- ``make_optimizer(params, lr, weight_decay)``: the optimizer a run uses when
  none is named (SCRAPL: P-Adam/P-SAGA in optimizer form);
- ``attach_params(params)``: gradient hooks to use with any other optimizer,
  attached for the run and detached after it (SCRAPL's reference-compatible form);
- ``check_optimizer(optimizer)``: warnings about an optimizer that does not suit it;
- ``manual_seed(seed)``: repeatable draws for a seeded run.

A :class:`~scrapl_graph.losses.LossSum` with a SCRAPL term offers all four
(its other terms' gradient is added after P-Adam/P-SAGA); one without is a
plain loss. Other losses get Adam by default and nothing else.
"""
from __future__ import annotations

import contextlib
import logging
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .. import checks
from ..losses import build_loss

log = logging.getLogger(__name__)

LossSpec = Union[str, Mapping[str, Any], nn.Module, Callable[[Tensor, Tensor], Tensor]]
OptimizerSpec = Union[None, str, Callable[[List[Tensor]], torch.optim.Optimizer]]
Callback = Callable[[Dict[str, Any]], Optional[bool]]


def as_loss(loss: LossSpec) -> Callable[..., Tensor]:
    """A loss module from a registry name, a ``{"class_path", "init_args"}`` config or a callable."""
    if isinstance(loss, (str, Mapping)):
        return build_loss(loss)
    if isinstance(loss, nn.Module) or callable(loss):
        return loss
    raise TypeError(f"loss must be a registry name, a config mapping or a callable module, got {type(loss).__name__}")


def loss_name(loss: Any) -> str:
    return type(loss).__name__ if isinstance(loss, nn.Module) else getattr(loss, "__name__", repr(loss))


def check_positive(value, name: str, kind=numbers.Real) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"{name} must be a positive {'integer' if kind is numbers.Integral else 'number'}, got {value!r}")


def resolve_device(device, default: torch.device) -> torch.device:
    if device is None:
        return default
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return device


def check_audio(x: Any, name: str) -> Tensor:
    """A finite real float tensor ``(batch, channels, samples)`` with at least one example and channel."""
    x = checks.check_audio(x, name, min_length=1)
    checks.check_finite(x, name)
    return x


def check_callbacks(callbacks) -> Tuple[Callback, ...]:
    callbacks = (callbacks,) if callable(callbacks) else tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables info -> Optional[bool], got {type(cb).__name__}")
    return callbacks


def run_callbacks(callbacks: Sequence[Callback], info: Dict[str, Any]) -> bool:
    """Call every callback; True if one of them asks to stop (returns a truthy value)."""
    return any([bool(callback(info)) for callback in callbacks])


def progress_bar(total: Optional[int], desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def _named_optimizer(spec: OptimizerSpec, params: List[Tensor], lr: float, weight_decay: float) -> torch.optim.Optimizer:
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


def linear_decay(optimizer: torch.optim.Optimizer, lr: float, lr_end: Optional[float],
                 steps: Optional[int]) -> Optional[torch.optim.lr_scheduler.LambdaLR]:
    """A scheduler taking every group's learning rate linearly to ``lr_end / lr`` of its start over ``steps``."""
    if lr_end is None:
        return None
    if isinstance(lr_end, bool) or not isinstance(lr_end, numbers.Real) or lr_end < 0:
        raise ValueError(f"lr_end must be a non-negative number, got {lr_end!r}")
    if steps is None:
        raise ValueError("lr_end needs a known number of steps: give max_steps or data with a length")
    ratio, span = lr_end / lr, max(1, steps - 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 + (ratio - 1.0) * min(k, span) / span)


@dataclass
class Run:
    """A loss and its optimizer, ready for a run (see :func:`prepare_run`)."""

    loss: Callable[..., Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: Optional[torch.optim.lr_scheduler.LambdaLR]
    name: str

    def step(self, compute_loss: Callable[[], Tensor], step: int) -> float:
        """One gradient step: zero the gradients, evaluate, check, backpropagate, update.

        Raises:
            FloatingPointError: if the loss is NaN or infinite.
        """
        self.optimizer.zero_grad(set_to_none=True)
        value = compute_loss()
        if not torch.isfinite(value):
            raise FloatingPointError(f"the loss became {value.item()} at step {step}")
        value.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return value.item()


@contextlib.contextmanager
def prepare_run(loss: LossSpec, params: List[Tensor], *, optimizer: OptimizerSpec, lr: float, weight_decay: float,
                lr_end: Optional[float], steps: Optional[int], device: torch.device,
                seed: Optional[int]) -> Iterator[Run]:
    """Build the loss and optimizer of a run; undo the run's changes to the loss on exit.

    The loss is moved to ``device`` in training mode and seeded; with no
    optimizer named, the loss's own ``make_optimizer`` is used if it has one
    (else Adam); with another optimizer, a loss with ``attach_params`` has the
    parameters attached for the run.
    """
    loss = as_loss(loss)
    if isinstance(loss, nn.Module):
        loss.to(device).train()
    own_optimizer = getattr(loss, "make_optimizer", None)
    attach = getattr(loss, "attach_params", None)
    if seed is not None and callable(getattr(loss, "manual_seed", None)):
        loss.manual_seed(seed)
    if optimizer is None and callable(own_optimizer):
        opt, attach = own_optimizer(params, lr=lr, weight_decay=weight_decay), None
    else:
        opt = _named_optimizer("adam" if optimizer is None else optimizer, params, lr, weight_decay)
        if callable(getattr(loss, "check_optimizer", None)):
            loss.check_optimizer(opt)
    if callable(attach):
        attach(params)
    run = Run(loss, opt, linear_decay(opt, lr, lr_end, steps), loss_name(loss))
    log.info("%s with optimizer %s (lr %g) on %s", run.name, type(opt).__name__, lr, device)
    try:
        yield run
    finally:
        if callable(attach):
            attach([])
