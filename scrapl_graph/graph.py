"""A GRAFX audio graph as a differentiable synth of a flat parameter vector theta.

GRAFX renders a graph from per-type parameter dictionaries,
``{node_type: {param_name: tensor (nodes_of_type, *shape)}}``, with shapes
given by each processor's ``parameter_size()``. SCRAPL (and a predictor
network) work with a flat ``theta`` of shape ``(B, n_theta)``, one row per
example. This module maps one to the other:

- :class:`ThetaLayout` lays the parameters of one graph instance out in
  theta: processor types in the order of the ``processors`` mapping, then
  parameter names in ``parameter_size()`` order (nested dicts depth first),
  then nodes of the type in node-id order, then the parameter's own shape in
  C order. ``n_theta`` is the sum of ``nodes * prod(shape)``.
- :class:`GraphSynth` renders a batch of thetas through ``grafx.render``: GRAFX
  shares one parameter set across the batch axis of a 4-D input, so the
  batch is rendered as one graph made of ``B`` disconnected copies, whose
  per-type parameter rows are permuted to GRAFX's rendering order.
- :func:`make_predictor_head` sizes a predictor's output layer from a layout.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

with warnings.catch_warnings():
    # GRAFX warns about the torchaudio version with a string comparison that
    # misreads "2.11" as older than "2.4"; the warning is spurious.
    warnings.simplefilter("ignore")
    from grafx.data import GRAFX, NodeConfigs
    from grafx.data.conversion import convert_to_tensor
    from grafx.render import prepare_render, render_grafx, reorder_for_fast_render
    from grafx.utils import count_nodes_per_type

log = logging.getLogger(__name__)

UTILITY_TYPES = ("in", "out", "mix")


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


def _nodes_with_type_ranks(graph: GRAFX):
    """Node ids of ``graph`` in sorted order, and each node's rank among the nodes of its type."""
    rank: Dict[int, int] = {}
    seen: Dict[str, int] = {}
    for node_id in sorted(graph.nodes):
        node_type = graph.nodes[node_id]["node_type"]
        rank[node_id] = seen.get(node_type, 0)
        seen[node_type] = rank[node_id] + 1
    return sorted(graph.nodes), rank


@dataclass
class _BatchPlan:
    """A rendered batch: GRAFX's render data and the row permutations into it."""

    render_data: object
    param_rows: Dict[str, Tensor]  # type -> example-major row for each GRAFX row
    input_rows: Tensor  # example-major "in" row for each GRAFX source slot
    output_rows: Tensor  # GRAFX output row for each example


class GraphSynth(nn.Module):
    r"""A GRAFX graph with its processors, rendered from a flat theta.

    ``forward(theta)`` maps theta ``(B, n_theta)`` to audio ``(B, C, L)``:

    1. :meth:`ThetaLayout.to_dicts` splits theta into per-type dicts;
    2. the batch is rendered by ``grafx.render.render_grafx`` as one graph of
       ``B`` disconnected copies of ``graph`` (GRAFX would share one
       parameter set across a 4-D input's batch axis); the copies' parameter
       rows are permuted into GRAFX's rendering order, which is computed once
       per batch size and device;
    3. the single ``"out"`` node of each copy gives that example's audio.

    Synth processors are one-inlet nodes fed by ``"in"`` nodes (see
    :mod:`scrapl_graph.processors`); ``input_signals`` defaults to silence.

    Args:
        graph: one graph instance, with exactly one ``"out"`` node and at least
            one ``"in"`` node; its node ids fix the layout's node order.
        processors: node type -> processor for every non-utility node type of
            the graph (extra types get zero nodes).
        num_samples: audio length ``L`` of the graph's signals.
        num_channels: channels ``C`` of the graph's signals (2 for GRAFX's
            stereo effects such as ``StereoGain``).
        order_method: GRAFX rendering-order method (``"beam"``, ``"greedy"``, ...).

    Raises:
        TypeError / ValueError: for a graph or processors that do not fit.
    """

    def __init__(self, graph: GRAFX, processors: Mapping[str, nn.Module], num_samples: int,
                 num_channels: int = 1, order_method: str = "beam"):
        super().__init__()
        if not isinstance(graph, GRAFX):
            raise TypeError(f"graph must be a grafx.data.GRAFX, got {type(graph).__name__}")
        if graph.batch:
            raise ValueError("graph must be a single instance, not a batched graph")
        if graph.config is None:
            raise ValueError("graph must have a NodeConfigs (GRAFX(config=...)) to be rendered")
        types = [d["node_type"] for _, d in graph.nodes(data=True)]
        missing = sorted({t for t in types if t not in UTILITY_TYPES and t not in processors})
        if missing:
            raise ValueError(f"no processor given for node type(s) {missing}")
        if types.count("out") != 1:
            raise ValueError(f"graph must have exactly one 'out' node, got {types.count('out')}")
        if types.count("in") < 1:
            raise ValueError("graph must have at least one 'in' node (synths are fed by one)")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"num_channels must be a positive int, got {num_channels!r}")
        self.graph = graph
        self.processors = nn.ModuleDict(dict(processors))
        self.layout = ThetaLayout.from_graph(self.processors, graph)
        self.num_samples = num_samples
        self.num_channels = num_channels
        self.num_inputs = types.count("in")
        self.order_method = order_method
        self._plans: Dict[Tuple[int, str], _BatchPlan] = {}

    @classmethod
    def chain(cls, processors: Mapping[str, nn.Module], num_samples: int, **kwargs) -> "GraphSynth":
        """The serial graph ``in -> (each processor, in mapping order) -> out``.

        Args:
            processors: node type -> processor, one node each, in signal order.
            num_samples, **kwargs: as for the constructor.
        """
        graph = GRAFX(config=NodeConfigs(list(processors)))
        nodes = [graph.add(t) for t in ["in", *processors, "out"]]
        for a, b in zip(nodes, nodes[1:]):
            graph.connect(a, b)
        return cls(graph, processors, num_samples, **kwargs)

    @property
    def n_theta(self) -> int:
        return self.layout.n_theta

    def _batched_graph(self, batch: int) -> GRAFX:
        """``batch`` copies of the graph in one GRAFX, nodes tagged with (copy, type rank)."""
        order, rank = _nodes_with_type_ranks(self.graph)
        big = GRAFX(config=self.graph.config)
        for b in range(batch):
            new_id = {}
            for node_id in order:
                node_type = self.graph.nodes[node_id]["node_type"]
                new_id[node_id] = big.add(node_type)
                big.nodes[new_id[node_id]]["example"] = b
                big.nodes[new_id[node_id]]["type_rank"] = rank[node_id]
            for src, dst, data in self.graph.edges(data=True):
                big.connect(new_id[src], new_id[dst], outlet=data.get("outlet", "main"),
                            inlet=data.get("inlet", "main"))
        return big

    def _plan(self, batch: int, device: torch.device) -> _BatchPlan:
        key = (batch, str(device))
        if key in self._plans:
            return self._plans[key]
        ordered = reorder_for_fast_render(self._batched_graph(batch), method=self.order_method)
        graph_tensor = convert_to_tensor(ordered)
        graph_tensor.to(device)
        render_data = prepare_render(graph_tensor)

        # GRAFX indexes a type's parameters by the rank of the node among the
        # nodes of that type in the reordered graph: map each such row back
        # to its example-major row b * num_nodes + k.
        rows: Dict[str, List[int]] = {}
        outputs = {}
        for node_id in sorted(ordered.nodes):
            data = ordered.nodes[node_id]
            node_type, b, k = data["node_type"], data["example"], data["type_rank"]
            if node_type == "out":
                outputs[b] = len(rows.get("out", []))
            # Nodes per example of this type ("out" and "mix" rows are unused).
            count = self.num_inputs if node_type == "in" else self.layout.node_counts.get(node_type, 1)
            rows.setdefault(node_type, []).append(b * count + k)
        as_index = lambda r: torch.tensor(r, dtype=torch.long, device=device)
        plan = _BatchPlan(
            render_data=render_data,
            param_rows={t: as_index(rows.get(t, [])) for t in self.layout.node_counts},
            input_rows=as_index(rows["in"]),
            output_rows=as_index([outputs[b] for b in range(batch)]),
        )
        self._plans[key] = plan
        log.debug("GraphSynth: planned rendering of %d copies on %s", batch, device)
        return plan

    def _permute(self, params, rows: Tensor):
        if torch.is_tensor(params):
            return params.index_select(0, rows)
        return {k: self._permute(v, rows) for k, v in params.items()}

    def forward(self, theta: Tensor, input_signals: Optional[Tensor] = None) -> Tensor:
        """Render a batch of thetas.

        Args:
            theta: ``(B, n_theta)`` unconstrained parameters.
            input_signals: signals of the ``"in"`` nodes, ``(B, n_in, C, L)``
                (or ``(B, C, L)`` when ``n_in == 1``); silence when ``None``.

        Returns:
            Tensor ``(B, C, L)``: the ``"out"`` node of each example.

        Raises:
            TypeError / ValueError: for mis-typed or mis-shaped theta or inputs.
        """
        theta = self.layout._check_theta(theta)
        batch, device = theta.shape[0], theta.device
        shape = (batch, self.num_inputs, self.num_channels, self.num_samples)
        if input_signals is None:
            input_signals = theta.new_zeros(shape)
        else:
            if not torch.is_tensor(input_signals) or not input_signals.is_floating_point():
                raise TypeError("input_signals must be a floating-point torch.Tensor")
            if input_signals.ndim == 3 and self.num_inputs == 1:
                input_signals = input_signals[:, None]
            if tuple(input_signals.shape) != shape:
                raise ValueError(f"input_signals must have shape {shape}, got {tuple(input_signals.shape)}")
        plan = self._plan(batch, device)
        params = {t: self._permute(p, plan.param_rows[t]) for t, p in self.layout.to_dicts(theta).items()}
        sources = input_signals.reshape(-1, self.num_channels, self.num_samples).index_select(0, plan.input_rows)
        output, _, _ = render_grafx(self.processors, sources, params, plan.render_data)
        return output.index_select(0, plan.output_rows)


def render_theta(graph: GRAFX, processors: Mapping[str, nn.Module], theta: Tensor, num_samples: int,
                 num_channels: int = 1, input_signals: Optional[Tensor] = None) -> Tensor:
    """Render ``theta`` through ``graph`` once (builds a :class:`GraphSynth`).

    For repeated rendering keep a :class:`GraphSynth`: it caches GRAFX's
    rendering plan per batch size.

    Args:
        graph, processors, num_samples, num_channels: as for :class:`GraphSynth`.
        theta: ``(B, n_theta)``.
        input_signals: as for :meth:`GraphSynth.forward`.

    Returns:
        Tensor ``(B, C, L)``.
    """
    synth = GraphSynth(graph, processors, num_samples=num_samples, num_channels=num_channels)
    return synth(theta, input_signals)


def make_predictor_head(layout: Union[ThetaLayout, GraphSynth, int], in_features: int, bias: bool = True,
                        init_std: Optional[float] = None) -> nn.Linear:
    """A linear output layer that predicts theta from ``in_features`` features.

    Args:
        layout: a :class:`ThetaLayout`, a :class:`GraphSynth` or ``n_theta``.
        in_features: size of the predictor's embedding.
        bias: give the layer a bias.
        init_std: if given, weights ~ N(0, init_std^2) and a zero bias, so that
            initial predictions sit near the middle of every parameter range
            (sigmoid(0)); otherwise PyTorch's default initialisation.

    Returns:
        ``nn.Linear(in_features, n_theta)``.

    Raises:
        TypeError / ValueError: for a bad layout or sizes.
    """
    if isinstance(layout, GraphSynth):
        layout = layout.layout
    if isinstance(layout, ThetaLayout):
        n_theta = layout.n_theta
    elif isinstance(layout, int) and not isinstance(layout, bool):
        n_theta = layout
    else:
        raise TypeError(f"layout must be a ThetaLayout, a GraphSynth or an int, got {type(layout).__name__}")
    if n_theta < 1:
        raise ValueError(f"n_theta must be >= 1, got {n_theta}")
    if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
        raise ValueError(f"in_features must be a positive int, got {in_features!r}")
    head = nn.Linear(in_features, n_theta, bias=bias)
    if init_std is not None:
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std}")
        with torch.no_grad():
            head.weight.normal_(0.0, init_std)
            if bias:
                head.bias.zero_()
    return head
