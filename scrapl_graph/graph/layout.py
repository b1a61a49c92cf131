"""Theta layout: where each processor parameter of a GRAFX graph sits in a flat theta.

Processor types come in the order of the ``processors`` mapping, then
parameter names in ``parameter_size()`` order (nested dicts depth first),
then nodes of the type in node-id order, then the parameter's own shape in C
order. ``n_theta`` is the sum of ``nodes * prod(shape)``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

import torch
from torch import Tensor, nn

from ..checks import check_finite

with warnings.catch_warnings():
    # GRAFX warns about the torchaudio version with a string comparison that
    # misreads "2.11" as older than "2.4"; the warning is spurious.
    warnings.simplefilter("ignore")
    from grafx.data import GRAFX
    from grafx.utils import count_nodes_per_type

__all__ = ["ThetaEntry", "ThetaLayout"]


@dataclass(frozen=True)
class ThetaEntry:
    """One parameter tensor of one processor type, as laid out in theta.

    Attributes:
        node_type: processor type (key of the processors mapping).
        path: parameter name, as a tuple of keys for nested ``parameter_size()`` dicts.
        shape: parameter shape without the node axis.
        num_nodes: nodes of this type in one graph instance.
        offset: first column of the entry in theta.
    """

    node_type: str
    path: Tuple[str, ...]
    shape: Tuple[int, ...]
    num_nodes: int
    offset: int

    @property
    def size(self) -> int:
        """Columns of theta taken by the entry: ``num_nodes * prod(shape)``."""
        return self.num_nodes * math.prod(self.shape)

    @property
    def name(self) -> str:
        return ".".join(self.path)


def _leaf_shapes(sizes, prefix: Tuple[str, ...] = ()) -> List[Tuple[Tuple[str, ...], Tuple[int, ...]]]:
    """Flatten a (possibly nested) ``parameter_size()`` dict to ``(path, shape)`` pairs."""
    if not isinstance(sizes, Mapping):
        raise TypeError(f"parameter_size() must return a dict, got {type(sizes).__name__}")
    leaves = []
    for key, value in sizes.items():
        path = prefix + (str(key),)
        if isinstance(value, Mapping):
            leaves.extend(_leaf_shapes(value, path))
        elif isinstance(value, int) and not isinstance(value, bool):
            leaves.append((path, (value,)))
        elif isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            leaves.append((path, tuple(value)))
        else:
            raise TypeError(f"parameter {'.'.join(path)!r}: shape must be an int or a tuple of ints, got {value!r}")
    return leaves


class ThetaLayout:
    """Where each processor parameter of one graph instance sits in a flat theta.

    Args:
        processors: node type -> processor with ``parameter_size()``; the
            mapping's order is the layout's type order.
        node_counts: node type -> number of nodes of that type in one graph
            instance (types missing here count zero nodes).

    Raises:
        TypeError: if a processor has no ``parameter_size()`` or it returns
            something other than a dict of int / tuple shapes.
        ValueError: for negative node counts.
    """

    def __init__(self, processors: Mapping[str, nn.Module], node_counts: Mapping[str, int]):
        self.entries: List[ThetaEntry] = []
        self.node_counts: Dict[str, int] = {}
        self._sizes: Dict[str, dict] = {}
        offset = 0
        for node_type, processor in processors.items():
            if not hasattr(processor, "parameter_size"):
                raise TypeError(f"processor {node_type!r} has no parameter_size() method")
            count = int(node_counts.get(node_type, 0))
            if count < 0:
                raise ValueError(f"node count of {node_type!r} must be >= 0, got {count}")
            self.node_counts[node_type] = count
            self._sizes[node_type] = processor.parameter_size()
            for path, shape in _leaf_shapes(self._sizes[node_type]):
                entry = ThetaEntry(node_type, path, shape, count, offset)
                self.entries.append(entry)
                offset += entry.size
        self.n_theta = offset

    @classmethod
    def from_graph(cls, processors: Mapping[str, nn.Module], graph: GRAFX) -> "ThetaLayout":
        """Layout for the nodes of ``graph`` (one instance, not a batched graph).

        Raises:
            TypeError: if ``graph`` is not a ``grafx.data.GRAFX``.
        """
        if not isinstance(graph, GRAFX):
            raise TypeError(f"graph must be a grafx.data.GRAFX, got {type(graph).__name__}")
        return cls(processors, count_nodes_per_type(graph, list(processors)))

    def __repr__(self) -> str:
        return f"ThetaLayout(n_theta={self.n_theta}, node_counts={self.node_counts})"

    def labels(self) -> List[str]:
        """One label per theta column, e.g. ``"chirplet[0].theta_am[0]"``."""
        out = []
        for e in self.entries:
            for node in range(e.num_nodes):
                for idx in range(math.prod(e.shape)):
                    out.append(f"{e.node_type}[{node}].{e.name}[{idx}]")
        return out

    def _check_theta(self, theta: Tensor) -> Tensor:
        if not torch.is_tensor(theta) or not theta.is_floating_point():
            raise TypeError("theta must be a floating-point torch.Tensor")
        if theta.ndim != 2 or theta.shape[1] != self.n_theta:
            raise ValueError(f"theta must have shape (B, {self.n_theta}), got {tuple(theta.shape)}")
        if theta.shape[0] == 0:
            raise ValueError(f"theta has shape {tuple(theta.shape)}: need at least one example")
        check_finite(theta, "theta", what="parameters")
        return theta

    def to_dicts(self, theta: Tensor) -> Dict[str, dict]:
        """Split theta into GRAFX's per-type parameter dicts.

        Args:
            theta: ``(B, n_theta)``.

        Returns:
            ``{node_type: {name: tensor (B * num_nodes, *shape)}}`` (nested like
            ``parameter_size()``), rows ordered example-major: row
            ``b * num_nodes + k`` is node ``k`` of example ``b``. For ``B = 1``
            this is exactly what ``grafx.render.render_grafx`` takes for the
            graph the layout was built from.

        Raises:
            TypeError / ValueError: if theta is not a float tensor of shape ``(B, n_theta)``.
        """
        theta = self._check_theta(theta)
        batch = theta.shape[0]
        out: Dict[str, dict] = {t: {} for t in self.node_counts}
        for e in self.entries:
            block = theta[:, e.offset:e.offset + e.size]
            value = block.reshape(batch * e.num_nodes, *e.shape)
            target = out[e.node_type]
            for key in e.path[:-1]:
                target = target.setdefault(key, {})
            target[e.path[-1]] = value
        return out

    def to_theta(self, dicts: Mapping[str, Mapping]) -> Tensor:
        """Inverse of :meth:`to_dicts`: gather per-type parameter dicts into theta.

        Accepts plain dicts as well as the ``nn.ParameterDict`` made by
        ``grafx.utils.create_empty_parameters`` (then ``B = 1``).

        Returns:
            Tensor ``(B, n_theta)``.

        Raises:
            ValueError: for missing types or parameters, wrong shapes, or
                inconsistent batch sizes.
        """
        batch = None
        columns = []
        for e in self.entries:
            if e.size == 0:
                continue  # a type without nodes has no columns
            if e.node_type not in dicts:
                raise ValueError(f"parameters of processor type {e.node_type!r} are missing")
            value = dicts[e.node_type]
            for key in e.path:
                if key not in value:
                    raise ValueError(f"parameter {e.node_type}.{e.name} is missing")
                value = value[key]
            if not torch.is_tensor(value):
                raise ValueError(f"parameter {e.node_type}.{e.name} must be a tensor, got {type(value).__name__}")
            if value.ndim != 1 + len(e.shape) or tuple(value.shape[1:]) != e.shape or value.shape[0] % e.num_nodes:
                raise ValueError(
                    f"parameter {e.node_type}.{e.name} must have shape (B * {e.num_nodes}, *{e.shape}), "
                    f"got {tuple(value.shape)}")
            b = value.shape[0] // e.num_nodes
            if batch is not None and b != batch:
                raise ValueError(f"parameter {e.node_type}.{e.name} has batch size {b}, others {batch}")
            batch = b
            columns.append(value.reshape(b, e.size))
        if batch is None:
            raise ValueError("the layout has no parameters (n_theta == 0) to gather")
        return torch.cat(columns, dim=1)
