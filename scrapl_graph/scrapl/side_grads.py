r"""Side gradients: the gradient of terms summed beside SCRAPL, kept out of P-Adam / P-SAGA.

For a training loss ``L = w_s L_scrapl + L_side`` (``L_side`` a weighted sum
of other losses, an MSS say), the update of every trained parameter w is

    w <- w - lr * (pathwise(grad_mult * g_scrapl) + g_side + weight_decay * w)

with ``g_scrapl = grad_w(w_s L_scrapl)`` and ``g_side = grad_w L_side``.
P-Adam and P-SAGA keep state per path and P-Adam is not linear, so the
transform must see the SCRAPL gradient alone; the side gradient is added
after it, as weight decay is.

One backward cannot give the two gradients apart, so they are taken in two
passes. During the training forward, :meth:`SideGradients.stash` takes
``g_side`` with ``torch.autograd.grad(L_side, params, retain_graph=True)``
(the graph below the loss inputs is shared and the SCRAPL backward still
needs it), and the loss returns a value whose graph holds only the SCRAPL
term. ``backward()`` then yields ``g_scrapl``, and the stash is added after
the transform in either form of P-Adam / P-SAGA:

- optimizer form (:meth:`bind_optimizer`): :class:`~scrapl_graph.scrapl.PathwiseAdamSAGA`
  takes the stash in ``step()`` (:meth:`take`). Under data-parallel training
  that optimizer sees all-reduced (averaged) gradients, so the stash is
  averaged over the processes too;
- hook form (:meth:`attach_hooks`): a gradient hook per parameter, registered
  after the SCRAPL hooks, adds the stash to the transformed gradient during
  ``backward``. These see each process's local gradient, and the data-parallel
  all-reduce that follows averages both parts alike.

A stash holds one step's side gradient: a training forward replaces it, and
the optimizer step or the hooks consume it once (one forward and backward
per step, as SCRAPL asks anyway).
"""
from __future__ import annotations

import functools
import logging
from typing import Dict, Iterable, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)


def _check_params(params: Iterable[Tensor]) -> List[Tensor]:
    params = list(params)
    for i, param in enumerate(params):
        if not isinstance(param, Tensor) or not param.requires_grad:
            raise TypeError(f"parameter {i} must be a tensor that requires grad, got {type(param).__name__}")
    return params


def _average_over_processes(grads: List[Tensor]) -> None:
    """Average ``grads`` in place over the processes of the default group (nothing without one)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world_size = dist.get_world_size()
    for grad in grads:  # every process reduces the same list, in the same order
        dist.all_reduce(grad)
        grad.div_(world_size)


class SideGradients:
    """The stash of side gradients for the parameters it is bound to (see the module docstring).

    Attributes:
        params: the bound parameters (empty: unbound, :meth:`stash` does nothing).
        form: ``"optimizer"``, ``"hooks"`` or None (unbound).
    """

    def __init__(self):
        self.params: List[Tensor] = []
        self.form: Optional[str] = None
        self._pending: Optional[List[Optional[Tensor]]] = None
        self._handles: list = []

    @property
    def bound(self) -> bool:
        return bool(self.params)

    def bind_optimizer(self, params: Iterable[Tensor]) -> None:
        """Bind ``params`` for the optimizer form: :meth:`take` hands their stash to the optimizer.

        Raises:
            TypeError: if an element is not a tensor that requires grad.
        """
        params = _check_params(params)
        self.unbind()
        self.params, self.form = params, "optimizer" if params else None

    def attach_hooks(self, params: Iterable[Tensor]) -> None:
        """Bind ``params`` for the hook form: a hook adds the stash to each one's gradient in ``backward``.

        Attach after the SCRAPL hooks (hooks run in the order they were
        registered): these must see the transformed gradient. An empty list detaches.

        Raises:
            TypeError: if an element is not a tensor that requires grad.
        """
        params = _check_params(params)
        self.unbind()
        self.params, self.form = params, "hooks" if params else None
        for i, param in enumerate(params):
            self._handles.append(param.register_hook(functools.partial(self._hook, index=i)))

    def unbind(self) -> None:
        """Forget the parameters, their hooks and any stash."""
        for handle in self._handles:
            handle.remove()
        self._handles, self.params, self.form, self._pending = [], [], None, None

    def stash(self, value: Tensor) -> None:
        """Take ``grad(value)`` for the bound parameters and hold it for the step (replaces any stash).

        The graph is retained: the SCRAPL backward that follows runs through
        the part it shares with ``value``. A parameter ``value`` does not
        depend on gets zeros (every process then reduces the same tensors).
        Call it with the SCRAPL hooks paused (``PathwiseHooks.paused``): they
        would take this gradient for the path's.
        """
        self._pending = None  # our own hooks fire inside autograd.grad too: nothing to add there
        if not self.params:
            return
        if value.requires_grad:
            grads = torch.autograd.grad(value, self.params, retain_graph=True, allow_unused=True)
        else:
            grads = [None] * len(self.params)
        self._pending = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(self.params, grads)]

    def take(self) -> Dict[Tensor, Tensor]:
        """The stash as ``{parameter: side gradient}`` (empty if none), averaged over processes; clears it.

        The optimizer form calls it once per step, on every process.
        """
        if self.form != "optimizer":
            return {}
        pending, self._pending = self._pending, None
        if pending is None:
            return {}
        _average_over_processes(pending)
        return dict(zip(self.params, pending))

    def _hook(self, grad: Tensor, index: int) -> Tensor:
        if self._pending is None or self._pending[index] is None:
            return grad
        side = self._pending[index]
        self._pending[index] = None  # added once, to the backward that follows the forward
        return grad + side
