"""Theta specs: a theta from a flat list of unconstrained values or from physical values by node and parameter."""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from ..graph import GraphSynth, ThetaEntry
from ..graph.synth import _nodes_with_type_ranks
from .checks import _prefixed

__all__ = ["theta_from_spec"]

_INDEXED_RE = re.compile(r"^(?P<base>[^\[\]\s]+?)(?:\[(?P<index>\d+)\])?$")


def _flat_theta(synth: GraphSynth, spec: Any) -> Tensor:
    """A flat list (or tensor) of ``n_theta`` unconstrained values as ``(1, n_theta)``."""
    n_theta = synth.n_theta
    try:
        values = torch.as_tensor(spec, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"theta: a flat theta must be a list of {n_theta} numbers, got {spec!r:.80}") from None
    if values.ndim == 2 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 1 or values.shape[0] != n_theta:
        raise ValueError(f"theta: a flat theta must have {n_theta} values (one per column of "
                         f"{synth.layout.labels()[:3]}...), got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError("theta: values must be finite")
    return values.to(torch.get_default_dtype())[None]


class _ThetaBuilder:
    """Fills a theta ``(1, n_theta)`` from physical values keyed by node and parameter."""

    def __init__(self, synth: GraphSynth):
        self.synth = synth
        self.layout = synth.layout
        self.theta = torch.zeros(1, self.layout.n_theta, dtype=torch.float64)
        self.owner: Dict[int, str] = {}
        self.names: Dict[str, Tuple[str, int]] = {}
        order, rank = _nodes_with_type_ranks(synth.graph)
        for node_id in order:
            data = synth.graph.nodes[node_id]
            if data.get("name") is not None:
                self.names[data["name"]] = (data["node_type"], rank[node_id])

    def nodes(self, key: str, where: str) -> Tuple[str, List[int]]:
        """Resolve ``type``, ``type[k]`` or a node name to ``(type, node ranks)``."""
        match = _INDEXED_RE.match(key)
        base, index = (match["base"], match["index"]) if match else (None, None)
        counts = self.layout.node_counts
        if base in counts:
            if counts[base] == 0:
                raise ValueError(f"{where}: the graph has no node of type {base!r}")
            if index is None:
                return base, list(range(counts[base]))
            if int(index) >= counts[base]:
                raise ValueError(f"{where}: node {key!r} does not exist; the graph has {counts[base]} "
                                 f"{base!r} node(s)")
            return base, [int(index)]
        if index is None and base in self.names:
            node_type, rank = self.names[base]
            if node_type not in counts:
                raise ValueError(f"{where}: node {base!r} (type {node_type!r}) has no parameters")
            return node_type, [rank]
        raise ValueError(f"{where}: unknown node {key!r}; use a node type {list(counts)}, 'type[k]'"
                         + (f" or a node name {sorted(self.names)}" if self.names else ""))

    def entry(self, node_type: str, key: str, where: str) -> Tuple[ThetaEntry, Optional[int]]:
        """Resolve ``name`` or ``name[i]`` to the parameter's layout entry and element index."""
        match = _INDEXED_RE.match(key)
        entries = [e for e in self.layout.entries if e.node_type == node_type]
        found = [e for e in entries if match and e.name == match["base"]]
        if not found:
            raise ValueError(f"{where}: {node_type!r} has no parameter {key!r}; "
                             f"parameters: {[e.name for e in entries]}")
        entry, index = found[0], match["index"]
        width = math.prod(entry.shape)
        if index is not None and int(index) >= width:
            raise ValueError(f"{where}: element {index} out of range for parameter {entry.name!r} "
                             f"of {width} element(s)")
        return entry, None if index is None else int(index)

    def assign(self, node_type: str, ranks: List[int], entry: ThetaEntry, element: Optional[int],
            value: Any, where: str) -> None:
        """Map physical ``value`` to unconstrained values and write them into the columns."""
        width = 1 if element is not None else math.prod(entry.shape)
        values = _as_values(value, len(ranks), width, where)
        values = _to_unconstrained(self.synth.processors[node_type], entry, element, values, where)
        size = math.prod(entry.shape)
        for row, rank in enumerate(ranks):
            start = entry.offset + rank * size + (element or 0)
            for column in range(start, start + width):
                if column in self.owner:
                    raise ValueError(f"{where}: column {self.layout.labels()[column]!r} is already set "
                                     f"by {self.owner[column]!r}")
                self.owner[column] = where
            self.theta[0, start:start + width] = values[row]

    def fill(self, spec: Mapping) -> Tensor:
        for key, value in spec.items():
            if not isinstance(key, str):
                raise TypeError(f"theta: keys must be strings, got {key!r}")
            where = f"theta[{key!r}]"
            node_key, dot, param_key = key.partition(".")
            node_type, ranks = self.nodes(node_key, where)
            if dot:
                self.assign(node_type, ranks, *self.entry(node_type, param_key, where), value, where)
                continue
            if not isinstance(value, Mapping):
                raise TypeError(f"{where}: a node key takes a mapping of parameter -> physical value, "
                                f"got {type(value).__name__}")
            for name, item in value.items():
                item_where = f"theta[{key!r}][{name!r}]"
                if not isinstance(name, str):
                    raise TypeError(f"{item_where}: parameter names must be strings")
                self.assign(node_type, ranks, *self.entry(node_type, name, item_where), item, item_where)
        return self.theta.to(torch.get_default_dtype())


def _as_values(value: Any, num_nodes: int, width: int, where: str) -> Tensor:
    """Physical values as ``(num_nodes, width)``: one value, one per element, or one per node and element."""
    if isinstance(value, (bool, str)):
        raise TypeError(f"{where}: expected a number or a list of numbers, got {value!r}")
    try:
        values = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{where}: expected a number or a list of numbers, got {value!r:.80}") from None
    n = values.numel()
    if n == 1:
        return values.reshape(1, 1).expand(num_nodes, width)
    if n == width:
        return values.reshape(1, width).expand(num_nodes, width)
    if n == num_nodes * width:
        return values.reshape(num_nodes, width)
    expected = sorted({1, width, num_nodes * width})
    raise ValueError(f"{where}: expected {' or '.join(map(str, expected))} value(s), got {n}")


def _to_unconstrained(processor: nn.Module, entry: ThetaEntry, element: Optional[int], values: Tensor,
                      where: str) -> Tensor:
    """Physical -> unconstrained through ``processor.unconstrained`` when it has one; else as given."""
    inverse = getattr(processor, "unconstrained", None)
    if not callable(inverse) or len(entry.path) != 1:
        out = values
    elif element is not None and math.prod(entry.shape) > 1:
        raise ValueError(f"{where}: {entry.node_type}.{entry.name} maps physical values as a whole; "
                         f"give all of its elements instead of one")
    else:
        shape = (values.shape[0],) + (entry.shape if element is None else (1,))
        try:
            mapped = inverse(**{entry.name: values.reshape(shape)})[entry.name]
        except (ValueError, TypeError) as err:
            raise _prefixed(err, where) from None
        out = torch.as_tensor(mapped, dtype=torch.float64).reshape(values.shape)
    if not torch.isfinite(out).all():
        raise ValueError(f"{where}: values must be finite, got {values.flatten().tolist()[:4]}")
    return out


def theta_from_spec(synth: GraphSynth, spec: Any) -> Tensor:
    """A theta ``(1, synth.n_theta)`` from a config value.

    ``spec`` is one of

    - ``None``: zeros, the middle of every parameter range;
    - a flat list (or tensor) of ``n_theta`` unconstrained values, in the
      order of ``synth.layout.labels()``;
    - a mapping of physical values. A key without a dot selects nodes — a
      node type (all its nodes, e.g. ``"chirplet"``), one node
      (``"chirplet[1]"``) or a node name from the graph config's ``nodes`` —
      and takes a mapping parameter name -> value, e.g.
      ``{"chirplet": {"theta_am": 4.0, "theta_fm": 3.0}}``. A key with a dot
      selects a parameter directly, e.g. ``"chirplet[0].theta_am[0]"`` (a
      layout label), ``"chirplet.theta_am"`` or ``"synth.theta_fm"``.

    A value is one number (for every node and element), one per element of
    the parameter, or one per node and element. Physical values are mapped
    through the processor's ``unconstrained(...)`` when it has one (the
    synths of :mod:`scrapl_graph.processors`), and are taken as unconstrained
    values otherwise (e.g. GRAFX's processors). Columns not given are 0.

    Args:
        synth: the graph synth the theta is for.
        spec: the theta config.

    Returns:
        Tensor ``(1, n_theta)`` of the default dtype.

    Raises:
        TypeError: for a spec of another type, non-numeric values, or a node
            key whose value is not a mapping.
        ValueError: for a flat list of the wrong length, unknown nodes or
            parameters, values out of a parameter's range, a wrong number of
            values, non-finite values, or a column set twice.
    """
    if not isinstance(synth, GraphSynth):
        raise TypeError(f"synth must be a GraphSynth, got {type(synth).__name__}")
    if spec is None:
        return torch.zeros(1, synth.n_theta)
    if isinstance(spec, Mapping):
        return _ThetaBuilder(synth).fill(spec)
    if isinstance(spec, str):
        raise TypeError(f"theta: expected a list of numbers or a mapping, got the string {spec!r}")
    return _flat_theta(synth, spec)
