"""Fake CUDA tensors for tests that need no GPU (importable as ``_fake_cuda``).

Under :class:`torch._subclasses.fake_tensor.FakeTensorMode` every tensor is
a shape, dtype and device without data: devices propagate as on a GPU, an
operation that mixes a real CPU tensor into the computation raises, and so
does any read of a value on the host (``.item()``, ``bool(t)``,
``.tolist()``, a boolean mask whose size depends on the data).

Two pieces of host work run outside the mode, as real CPU computation:
drawing a SCRAPL path (CPU probabilities and a CPU generator, then an int)
and drawing a synth's random numbers from its CPU generators; see
:meth:`FakeCuda.on_host`.

The backward pass. In torch 2.11 the autograd engine asks the CUDA driver
for a device context before it runs a graph holding CUDA tensors
(``hasPrimaryContext``), which fails without a GPU even for fake tensors
(see pytorch/pytorch#92627). :func:`grad` therefore runs the graph itself:
it calls every node's backward function in topological order, with the
engine's bookkeeping (summing a broadcast gradient to its input's shape,
materializing missing gradients as zeros, refusing a gradient on another
device, running the tensor hooks of leaves). Every backward formula of the
graph thus runs on fake CUDA tensors; only the engine's scheduling and
stream handling are not exercised.
"""
from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily

CUDA = torch.device("cuda:0")


def _topological(roots: Sequence) -> List:
    """Autograd nodes reachable from ``roots``, each after every node that feeds it a gradient."""
    order, seen = [], {}
    for root in roots:
        if id(root) in seen:
            continue
        seen[id(root)] = root
        stack = [(root, iter(root.next_functions))]
        while stack:
            node, children = stack[-1]
            for child, _ in children:
                if child is not None and id(child) not in seen:
                    seen[id(child)] = child
                    stack.append((child, iter(child.next_functions)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order[::-1]


def _received(node, grads: Dict[int, Tensor]) -> List[Tensor]:
    """The gradients of a node's outputs, as the engine hands them over."""
    out = []
    for i, meta in enumerate(node._input_metadata):
        g = grads.get(i)
        if g is None:
            g = torch.zeros(meta.shape, dtype=meta.dtype, device=meta.device)
        if g.device != meta.device:
            raise RuntimeError(f"{type(node).__name__}: gradient on {g.device} for a tensor on {meta.device}")
        if tuple(g.shape) != tuple(meta.shape):
            g = g.sum_to_size(meta.shape)
        out.append(g if g.dtype == meta.dtype else g.to(meta.dtype))
    return out


def _drop_non_tensor_inputs(node, outs: tuple) -> tuple:
    """A custom Function returns a gradient (None) for each non-tensor argument; the graph has no edge for it."""
    extra = len(outs) - len(node.next_functions)
    kept = []
    for g, needed in zip(outs, node.needs_input_grad):
        if extra and g is None and not needed:
            extra -= 1
            continue
        kept.append(g)
    return tuple(kept)


def _leaf_hooks(leaf: Tensor, g: Tensor) -> Tensor:
    for hook in (leaf._backward_hooks or {}).values():
        result = hook(g)
        g = g if result is None else result
    return g


def grad(outputs, inputs=None, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=None,
         is_grads_batched=False, materialize_grads=False, accumulate=False):
    """``torch.autograd.grad`` (or, with ``accumulate``, ``backward``) without the autograd engine."""
    if is_grads_batched:  # one pass per row of the batched grad_outputs, stacked
        rows = [grad(outputs, inputs, g, create_graph=create_graph, allow_unused=allow_unused,
                     materialize_grads=True) for g in grad_outputs.unbind(0)]
        return tuple(torch.stack(column) for column in zip(*rows))
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs)
    # Keys are ids of autograd nodes; every node object stays referenced
    # (in ``alive``) for the whole walk, so that no id is reused.
    alive: List = []
    targets = {}
    if inputs is not None:
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        for k, t in enumerate(inputs):
            edge = torch.autograd.graph.get_gradient_edge(t)
            alive.append(edge)
            targets[(id(edge.node), edge.output_nr)] = k
    pending: Dict[int, Dict[int, Tensor]] = defaultdict(dict)
    roots = [o.grad_fn for o in outputs]
    alive.extend(roots)
    for out, root, g in zip(outputs, roots, grad_outputs):
        g = torch.ones_like(out) if g is None else g
        slot = pending[id(root)]
        slot[out.output_nr] = g + slot[out.output_nr] if out.output_nr in slot else g
    found: List[Optional[Tensor]] = [None] * (len(inputs) if inputs is not None else 0)
    with torch.set_grad_enabled(create_graph):
        order = _topological(roots)
        alive.extend(order)
        for node in order:
            received = _received(node, pending.pop(id(node), {}))
            for nr, g in enumerate(received):
                if (id(node), nr) in targets:
                    leaf = getattr(node, "variable", None)
                    found[targets[(id(node), nr)]] = g if leaf is None else _leaf_hooks(leaf, g)
            if type(node).__name__ == "AccumulateGrad":
                if accumulate:
                    leaf = node.variable
                    g = _leaf_hooks(leaf, received[0])
                    leaf.grad = g if leaf.grad is None else leaf.grad + g
                continue
            outs = node(*received) if callable(node) else node.apply(*received)
            outs = outs if isinstance(outs, tuple) else (outs,)
            if len(outs) > len(node.next_functions):
                outs = _drop_non_tensor_inputs(node, outs)
            for (child, k), g in zip(node.next_functions, outs):
                if child is not None and g is not None:
                    # As the engine's validate_outputs: a broadcast gradient is summed to the input's
                    # shape before it meets the other gradients of that input.
                    shape = tuple(child._input_metadata[k].shape)
                    g = g if tuple(g.shape) == shape else g.sum_to_size(shape)
                    slot = pending[id(child)]
                    slot[k] = g if k not in slot else slot[k] + g
    if inputs is None:
        return None
    if materialize_grads:
        found = [torch.zeros_like(t) if g is None else g for g, t in zip(found, inputs)]
    elif not allow_unused and any(g is None for g in found):
        raise RuntimeError("one of the differentiated tensors was not used in the graph")
    return tuple(found)


def backward(tensor, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """``Tensor.backward`` without the autograd engine (see :func:`grad`)."""
    grad(tensor, None, gradient, create_graph=create_graph, accumulate=True)


class FakeCuda:
    """A FakeTensorMode in which modules move to a fake ``cuda:0`` and backward passes avoid the engine.

    Use as a context manager; inside it, ``torch.autograd.grad`` and
    ``Tensor.backward`` are :func:`grad` and :func:`backward`.
    """

    def __init__(self):
        self.mode = FakeTensorMode()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "FakeCuda":
        import unittest.mock as mock

        self._stack.enter_context(mock.patch.object(torch.autograd, "grad", grad))
        self._stack.enter_context(mock.patch.object(Tensor, "backward", backward))
        self._stack.enter_context(self.mode)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def to_cuda(self, module: nn.Module) -> nn.Module:
        """Move a module built on the CPU (outside the mode) to the fake device."""
        def move(t: Tensor) -> Tensor:
            fake = t if isinstance(t, FakeTensor) else self.mode.from_tensor(t)
            return fake.to(CUDA)

        return module._apply(move)

    @staticmethod
    def on_host(obj, name: str) -> None:
        """Run method ``name`` of ``obj`` outside the mode: it is host work on real CPU tensors."""
        method = getattr(obj, name)

        @functools.wraps(method)
        def real(*args, **kwargs):
            with unset_fake_temporarily():
                return method(*args, **kwargs)

        setattr(obj, name, real)
