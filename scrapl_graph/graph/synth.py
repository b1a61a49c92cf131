"""Rendering a batch of flat thetas through a GRAFX graph.

GRAFX shares one parameter set across the batch axis of a 4-D input, so
:class:`GraphSynth` renders a batch as one graph made of ``B`` disconnected
copies, whose per-type parameter rows are permuted to GRAFX's rendering
order.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

with warnings.catch_warnings():
    # GRAFX warns about the torchaudio version with a string comparison that
    # misreads "2.11" as older than "2.4"; the warning is spurious.
    warnings.simplefilter("ignore")
    from grafx.data import GRAFX, NodeConfigs
    from grafx.data.conversion import convert_to_tensor
    from grafx.render import prepare_render, render_grafx, reorder_for_fast_render

from .layout import ThetaLayout

log = logging.getLogger(__name__)

__all__ = ["UTILITY_TYPES", "GraphSynth", "render_theta"]

UTILITY_TYPES = ("in", "out", "mix")


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
        shape = (theta.shape[0], self.num_inputs, self.num_channels, self.num_samples)
        if input_signals is None:
            return self.render(theta, theta.new_zeros(shape))
        if not torch.is_tensor(input_signals) or not input_signals.is_floating_point():
            raise TypeError("input_signals must be a floating-point torch.Tensor")
        if input_signals.ndim == 3 and self.num_inputs == 1:
            input_signals = input_signals[:, None]
        if tuple(input_signals.shape) != shape:
            raise ValueError(f"input_signals must have shape {shape}, got {tuple(input_signals.shape)}")
        return self.render(theta, input_signals)

    def render(self, theta: Tensor, input_signals: Tensor) -> Tensor:
        """Render a batch of thetas on inputs of any length (chunked rendering uses this).

        The processors must accept that length: the synths of this package
        have a fixed one (their ``num_samples``), the effects do not.

        Args:
            theta: ``(B, n_theta)`` unconstrained parameters.
            input_signals: ``(B, n_in, C, T)`` (or ``(B, C, T)`` when ``n_in == 1``) for any ``T >= 1``.

        Returns:
            Tensor ``(B, C, T)``.

        Raises:
            TypeError / ValueError: for mis-typed or mis-shaped theta or inputs.
        """
        theta = self.layout._check_theta(theta)
        batch, device = theta.shape[0], theta.device
        if not torch.is_tensor(input_signals) or not input_signals.is_floating_point():
            raise TypeError("input_signals must be a floating-point torch.Tensor")
        if input_signals.ndim == 3 and self.num_inputs == 1:
            input_signals = input_signals[:, None]
        if input_signals.ndim != 4 or tuple(input_signals.shape[:3]) != (batch, self.num_inputs, self.num_channels):
            raise ValueError(f"input_signals must have shape ({batch}, {self.num_inputs}, {self.num_channels}, T), "
                             f"got {tuple(input_signals.shape)}")
        length = input_signals.shape[-1]
        plan = self._plan(batch, device)
        params = {t: self._permute(p, plan.param_rows[t]) for t, p in self.layout.to_dicts(theta).items()}
        sources = input_signals.reshape(-1, self.num_channels, length).index_select(0, plan.input_rows)
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
