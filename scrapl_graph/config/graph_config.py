"""Graph configs: processor specs and their wiring, built into a :class:`~scrapl_graph.graph.GraphSynth`."""
from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

from torch import nn

from ..graph import GraphSynth
from ..io import build_object
from ..processors import (Biquad, ChirpletSynth, DrumSynth, EnvelopeCompressor, GranularChirpSynth, ModulatedDelay,
                          OnePoleLowpass, Phaser, TimeShift, Tremolo)
from .checks import _check_mapping, _check_name, _prefixed
from .topology import IN, MIX, OUT, _chain_topology, _explicit_topology, _make_grafx

log = logging.getLogger(__name__)

__all__ = ["GRAPH_KEYS", "PROCESSOR_ALIASES", "build_graph_synth"]

#: Short names accepted in a processor's ``class_path`` (at any nesting level) besides full import paths.
PROCESSOR_ALIASES: Dict[str, type] = {
    "ChirpletSynth": ChirpletSynth,
    "DrumSynth": DrumSynth,
    "GranularChirpSynth": GranularChirpSynth,
    "TimeShift": TimeShift,
    "Tremolo": Tremolo,
    "Phaser": Phaser,
    "ModulatedDelay": ModulatedDelay,
    "OnePoleLowpass": OnePoleLowpass,
    "Biquad": Biquad,
    "EnvelopeCompressor": EnvelopeCompressor,
}

#: Keys of a graph config.
GRAPH_KEYS = ("num_samples", "num_channels", "order_method", "processors", "chain", "nodes", "edges")


def _check_count(spec: Mapping, key: str, default: Optional[int] = None) -> int:
    if key not in spec and default is None:
        raise ValueError(f"graph.{key} is missing")
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"graph.{key} must be a positive int, got {value!r}")
    return value


def _build_processor(node_type: str, item: Any) -> nn.Module:
    """Build the processor of one node type from its ``class_path`` spec (or a bare class path) with jsonargparse."""
    where = f"graph.processors.{node_type}"
    processor = build_object(item, nn.Module, where=where, aliases=PROCESSOR_ALIASES)
    if not callable(getattr(processor, "parameter_size", None)):
        raise TypeError(f"{where}: {type(processor).__name__} has no parameter_size() method, "
                        f"so it cannot be a GRAFX processor")
    return processor


def _build_processors(spec: Any, num_samples: int) -> Dict[str, nn.Module]:
    """Instantiate every processor of ``graph.processors``, in the mapping's order.

    Raises:
        TypeError / ValueError: for a bad spec, a reserved or invalid type name,
            or a processor whose ``num_samples`` differs from the graph's.
    """
    spec = _check_mapping(spec, "graph.processors")
    if not spec:
        raise ValueError("graph.processors must name at least one processor")
    processors = {}
    for node_type, item in spec.items():
        _check_name(node_type, "graph.processors")
        if node_type in (IN, OUT, MIX):
            raise ValueError(f"graph.processors: {node_type!r} is a GRAFX utility node type, not a processor")
        processor = _build_processor(node_type, item)
        length = getattr(processor, "num_samples", None)
        if isinstance(length, int) and length != num_samples:
            raise ValueError(f"graph.processors.{node_type}: num_samples={length} differs from "
                             f"graph.num_samples={num_samples}")
        processors[node_type] = processor
    return processors


def _graph_settings(spec: Mapping) -> Tuple[int, int, str]:
    """The checked ``num_samples``, ``num_channels`` and ``order_method`` of a graph config's top level.

    Raises:
        TypeError / ValueError: for unknown keys, bad sizes, a non-string
            ``order_method``, a missing ``processors``, or both or neither of
            ``chain`` and ``nodes``/``edges``.
    """
    unknown = sorted(set(spec) - set(GRAPH_KEYS))
    if unknown:
        raise ValueError(f"graph: unknown key(s) {unknown}; allowed: {list(GRAPH_KEYS)}")
    num_samples = _check_count(spec, "num_samples")
    num_channels = _check_count(spec, "num_channels", default=1)
    order_method = spec.get("order_method", "beam")
    if not isinstance(order_method, str):
        raise TypeError(f"graph.order_method must be a string, got {type(order_method).__name__}")
    if "processors" not in spec:
        raise ValueError("graph.processors is missing (node type -> processor spec)")
    has_chain, has_explicit = "chain" in spec, "nodes" in spec or "edges" in spec
    if has_chain == has_explicit:
        raise ValueError("graph needs either 'chain' or 'nodes' and 'edges', "
                         + ("not both" if has_chain else "got neither"))
    return num_samples, num_channels, order_method


def build_graph_synth(spec: Mapping[str, Any]) -> GraphSynth:
    """Build a :class:`~scrapl_graph.graph.GraphSynth` from a graph config.

    The config (a mapping, as loaded from YAML or JSON) has the keys

    - ``num_samples`` (int): signal length; ``num_channels`` (int, default 1);
      ``order_method`` (str, default ``"beam"``): GRAFX rendering-order method;
    - ``processors``: node type -> ``{"class_path": ..., "init_args": {...}}``
      (or a bare class path); ``class_path`` is an import path or one of
      :data:`PROCESSOR_ALIASES`. jsonargparse builds each
      (:func:`~scrapl_graph.io.build_object`): init_args are checked against
      the class's signature, and may hold nested specs. The mapping's order
      is the theta layout's type order;
    - either ``chain``: a list of node types, wired ``in -> ... -> out``;
    - or ``nodes`` (node name -> node type; ``"mix"`` and extra ``"in"``
      nodes are allowed) and ``edges`` (``[source, destination]`` pairs of
      node names, with the implicit ``"in"`` and ``"out"`` nodes). Node names
      are kept on the graph, so :func:`theta_from_spec` accepts them.

    Node ids follow the order ``in``, the chain or ``nodes``, ``out``, so the
    synth equals one built by hand with ``GRAFX.add`` in that order.

    Args:
        spec: the graph config.

    Returns:
        The synth (``synth.graph``, ``synth.processors``, ``synth.layout``).

    Raises:
        TypeError / ValueError: naming the offending key, for unknown keys,
            bad sizes, processors that cannot be built (unknown class paths,
            init_args that do not fit the signature) or lack
            ``parameter_size()``, processors whose ``num_samples`` differs from
            the graph's, both or neither of ``chain`` and ``nodes``/``edges``,
            unknown node types, edges to unknown nodes, duplicate or self
            edges, unfed or dangling nodes, and cycles.
    """
    spec = _check_mapping(spec, "graph")
    num_samples, num_channels, order_method = _graph_settings(spec)
    has_chain = "chain" in spec

    processors = _build_processors(spec["processors"], num_samples)
    if has_chain:
        nodes, edges = _chain_topology(spec["chain"], processors)
    else:
        nodes, edges = _explicit_topology(spec, processors)
    unused = [t for t in processors if t not in {node_type for _, node_type in nodes}]
    if unused:
        log.warning("graph.processors %s have no node in the graph; they get no theta columns", unused)

    graph = _make_grafx(processors, nodes, edges, named=not has_chain)
    try:
        synth = GraphSynth(graph, processors, num_samples=num_samples, num_channels=num_channels,
                           order_method=order_method)
    except (ValueError, TypeError) as err:
        raise _prefixed(err, "graph") from None
    log.info("built a graph synth: %d nodes, %d edges, n_theta=%d", graph.number_of_nodes(),
             graph.number_of_edges(), synth.n_theta)
    return synth
