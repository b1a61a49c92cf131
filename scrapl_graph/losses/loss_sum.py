r"""LossSum: a weighted sum of losses, SCRAPL among them or not.

``LossSum(terms, weights)(input, target) = sum_i w_i L_i(input, target)``.
Every term is called as ``loss(input, target)`` on (batch, channels,
samples), as auraloss's losses are, and its last value is kept for logging.

Without a SCRAPL term the sum is an ordinary differentiable loss for any
optimizer. With one (at most one), P-Adam, P-SAGA and ``grad_mult`` must act
on the SCRAPL term's gradient alone: they keep state per path, and P-Adam is
not linear. The other terms' gradient is taken apart during the training
forward and added after the path-wise transform, as weight decay is (see
:mod:`scrapl_graph.scrapl.side_grads` for the math and the two passes):

    update = lr * (pathwise(grad_mult * grad(w_s L_scrapl)) + grad(sum_{i != s} w_i L_i))

The sum then offers what training code asks of a SCRAPL loss
(``make_optimizer``, ``attach_params``, ``check_optimizer``, ``manual_seed``;
see :mod:`scrapl_graph.train.run`), and :func:`scrapl_term_of` hands theta-IS
and the path probabilities their SCRAPL term.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Any, Dict, Iterable, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from ..scrapl import PathwiseAdamSAGA, SideGradients
from .registry import build_loss
from .scrapl_loss import SCRAPLLoss

#: A term: a registry name, a ``{"class_path", "init_args"}`` spec, or a built loss module.
TermSpec = Union[str, Dict[str, Any], nn.Module]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a module name and a log key: train/loss/<name>


def _build_terms(terms: Mapping[str, TermSpec]) -> Dict[str, nn.Module]:
    if not isinstance(terms, Mapping) or not terms:
        raise ValueError(f"terms must be a non-empty mapping name -> loss, got {terms!r}")
    built = {}
    for name, spec in terms.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"term name {name!r} must be an identifier (letters, digits, underscores)")
        try:
            built[name] = spec if isinstance(spec, nn.Module) else build_loss(spec)
        except (ValueError, TypeError) as err:
            # build_loss names the place "loss" ("loss: unknown loss 'x'", "loss.init_args.J: ..."): here the term's.
            message = str(err)
            message = f"terms.{name}{message[4:]}" if message.startswith("loss") else f"terms.{name}: {message}"
            raise type(err)(message) from None
        if isinstance(built[name], LossSum) and built[name].scrapl_term is not None:
            raise ValueError(f"terms.{name}: a LossSum holding a SCRAPL term cannot be a term; list its terms here")
    return built


def _check_weights(weights: Optional[Mapping[str, float]], names: Iterable[str]) -> Dict[str, float]:
    names = list(names)
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(names), key=str)
    if unknown:
        raise ValueError(f"weights: no term named {', '.join(map(repr, unknown))}; terms: {', '.join(names)}")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weights.{name} must be a finite number >= 0, got {weight!r}")
    return {name: float(weights.get(name, 1.0)) for name in names}


def _scrapl_only(method):
    """``method`` as an attribute that a sum has only when it holds a SCRAPL term.

    Training code finds these by duck typing (``getattr(loss, "make_optimizer",
    None)``); a sum without SCRAPL must look like any plain loss there, so the
    attribute raises AttributeError on it.
    """
    def get(self):
        if self.scrapl_term is None:
            raise AttributeError(f"{method.__name__}: this {type(self).__name__} holds no SCRAPL term")
        return method.__get__(self, type(self))

    return property(get, doc=method.__doc__)


class LossSum(nn.Module):
    r"""A weighted sum of losses: ``sum_i w_i L_i(input, target)``.

    Built by name from YAML as well, e.g. for ``scrapl-graph fit``::

        model:
          loss:
            class_path: scrapl_graph.losses.LossSum
            init_args:
              terms:
                scrapl: {class_path: scrapl, init_args: {shape: 8192, J: 10}}
                mss: mss_log_linear
              weights: {mss: 0.1}

    With a SCRAPL term (at most one), ``grad_mult``, P-Adam and P-SAGA act on
    the gradient of ``w_s L_scrapl`` only, and the other terms' gradient is
    added after them (module docstring), in both forms: :meth:`make_optimizer`
    and :meth:`attach_params`. Its weight scales the SCRAPL gradient before
    the transform, where P-Adam all but cancels it (Adam is scale-invariant up
    to its epsilon). Take one forward and backward per optimizer step, as for
    SCRAPL alone.

    Args:
        terms: name -> loss: a registry name (``"mss_random"``), a
            ``{"class_path", "init_args"}`` spec (built by
            :func:`~scrapl_graph.losses.build_loss`) or a loss module. Names
            are identifiers; they key :attr:`last_values` and the logs
            (``train/loss/<name>``).
        weights: name -> w_i, finite and >= 0; a term not named here weighs 1.

    Attributes:
        weights: name -> weight, every term.
        scrapl_term: the SCRAPL term, or None.
        scrapl_name: its name, or None.
        compares: ``"audio"``, or ``"theta"`` when every term compares parameters (the P-loss).
        last_values, last_weighted: name -> the term's last value, unweighted
            and weighted (detached tensors; empty before the first call).

    Raises:
        ValueError: for no terms, a term name that is not an identifier, a
            term spec naming an unknown loss (its message starts with
            ``terms.<name>``), weights for terms that do not exist, negative
            or non-finite weights, two SCRAPL terms, or terms that compare
            different things (audio and parameters).
        TypeError: for a term spec of the wrong type or arguments that do
            not fit its class.
    """

    def __init__(self, terms: Mapping[str, TermSpec], weights: Optional[Mapping[str, float]] = None):
        super().__init__()
        built = _build_terms(terms)
        self.weights = _check_weights(weights, built)
        scrapl = [name for name, term in built.items() if isinstance(term, SCRAPLLoss)]
        if len(scrapl) > 1:
            raise ValueError(f"terms: at most one SCRAPL term, got {len(scrapl)} ({', '.join(scrapl)}): P-Adam and "
                             f"P-SAGA follow one path sequence")
        compares = {getattr(term, "compares", "audio") for term in built.values()}
        if len(compares) > 1:
            raise ValueError("terms: all terms must compare the same thing (audio, or parameters for the P-loss)")
        self.terms = nn.ModuleDict(built)
        self.scrapl_name: Optional[str] = scrapl[0] if scrapl else None
        self.compares = compares.pop()
        self.side_gradients = SideGradients()
        self.last_values: Dict[str, Tensor] = {}
        self.last_weighted: Dict[str, Tensor] = {}

    @property
    def scrapl_term(self) -> Optional[SCRAPLLoss]:
        return self.terms[self.scrapl_name] if self.scrapl_name is not None else None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """``sum_i w_i L_i(input, target)``, a scalar tensor.

        In a training forward of a sum whose SCRAPL term has bound parameters
        (:meth:`make_optimizer`, :meth:`attach_params`) and grad enabled, the
        other terms' gradient is stashed and the value returned carries the
        SCRAPL term's graph only: its value is the whole sum, its
        ``backward()`` gives the SCRAPL gradient.
        """
        values = {name: term(input, target) for name, term in self.terms.items()}
        weighted = {name: self.weights[name] * value for name, value in values.items()}
        self.last_values = {name: value.detach() for name, value in values.items()}
        self.last_weighted = {name: value.detach() for name, value in weighted.items()}
        if not self._separates():
            return sum(weighted.values())
        scrapl = weighted.pop(self.scrapl_name)
        side = sum(weighted.values())
        with self.scrapl_term.pathwise.paused():  # the SCRAPL hooks would take the side gradient for the path's
            self.side_gradients.stash(side)
        return scrapl + side.detach()

    def _separates(self) -> bool:
        return (self.scrapl_name is not None and len(self.terms) > 1 and self.side_gradients.bound
                and self.training and torch.is_grad_enabled())

    # ------------------------------------------- what training code asks of SCRAPL
    @_scrapl_only
    def make_optimizer(self, params: Iterable, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """P-Adam / P-SAGA in optimizer form for ``params``, driven by the SCRAPL term's path,
        with the other terms' gradient added after the transform.

        The parameters are bound to this sum; a later call rebinds them. A SCRAPL term with
        ``optimizer="adam"`` has no path-wise transform: its Adam sees the whole sum's gradient.
        """
        if self.scrapl_term.optimizer == "adam":
            return self.scrapl_term.make_optimizer(params, lr, weight_decay)
        optimizer = PathwiseAdamSAGA(params, lr=lr, weight_decay=weight_decay, loss=self.scrapl_term,
                                     side_gradients=self.side_gradients)
        self.side_gradients.bind_optimizer(p for group in optimizer.param_groups for p in group["params"])
        return optimizer

    @_scrapl_only
    def attach_params(self, params: Iterable[Tensor]) -> None:
        """The hook form: the SCRAPL term's hooks transform its gradient, then a hook of the sum adds
        the other terms' gradient (use plain SGD). Attach an empty list to detach."""
        params = list(params)
        self.scrapl_term.attach_params(params)
        self.side_gradients.attach_hooks(params)  # registered after the SCRAPL hooks: they run after them

    @_scrapl_only
    def check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Warn when ``optimizer`` does not suit the hook form (see ``SCRAPLLoss.check_optimizer``)."""
        self.scrapl_term.check_optimizer(optimizer)

    @_scrapl_only
    def manual_seed(self, seed: int) -> None:
        """Restart the SCRAPL term's path draws from ``seed``."""
        self.scrapl_term.manual_seed(seed)


def scrapl_term_of(loss: Any) -> Optional[SCRAPLLoss]:
    """The SCRAPL loss inside ``loss``: itself, a :class:`LossSum`'s SCRAPL term, or None.

    Theta-IS, path probabilities and the JTFS settings of metrics act on this loss.
    """
    if isinstance(loss, SCRAPLLoss):
        return loss
    if isinstance(loss, LossSum):
        return loss.scrapl_term
    return None
