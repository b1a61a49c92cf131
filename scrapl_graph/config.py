"""Graph synths, thetas and losses from YAML / JSON configs.

A graph config names its processors in the ``class_path`` / ``init_args``
style of Lightning and jsonargparse, and wires them either as a chain or as
explicit nodes and edges::

    num_samples: 8192
    num_channels: 1            # optional
    processors:                # node type -> processor spec
      chirplet: {class_path: ChirpletSynth, init_args: {sample_rate: 8192, num_samples: 8192}}
      eq: {class_path: grafx.processors.ZeroPhaseFIREqualizer, init_args: {num_magnitude_bins: 65}}
    chain: [chirplet, eq]      # in -> chirplet -> eq -> out
    # or, instead of chain (the "in" and "out" nodes are implicit):
    # nodes: {synth: chirplet, eq1: eq}
    # edges: [[in, synth], [synth, eq1], [eq1, out]]

A run config adds a loss and the thetas of an experiment::

    graph: {...}               # as above
    loss: {class_path: scrapl, init_args: {shape: 8192, J: 10}}
    target_theta: {chirplet: {theta_am: 4.0, theta_fm: 3.0}}   # physical values
    theta_init: null           # zeros: the middle of every range
    trainable: [chirplet]      # layout labels or node types

Functions:

- :func:`build_graph_synth`: a :class:`~scrapl_graph.graph.GraphSynth` from a graph config;
- :func:`theta_from_spec`: a theta ``(1, n_theta)`` from a flat list or from physical values;
- :func:`load_run_config`: the synth, loss and thetas of a run config file.
"""
from __future__ import annotations

import logging
import math
import re
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import networkx as nx
import torch
from torch import Tensor, nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # GRAFX's spurious torchaudio version warning
    from grafx.data import GRAFX, NodeConfigs

from .graph import GraphSynth, ThetaEntry, _nodes_with_type_ranks
from .io import instantiate, load_config
from .losses import build_loss
from .processors import ChirpletSynth, DrumSynth, GranularChirpSynth, TimeShift
from .train import resolve_columns

log = logging.getLogger(__name__)

__all__ = [
    "GRAPH_KEYS",
    "PROCESSOR_ALIASES",
    "RUN_KEYS",
    "build_graph_synth",
    "load_run_config",
    "theta_from_spec",
]

#: Short names accepted in a processor's ``class_path`` besides full import paths.
PROCESSOR_ALIASES: Dict[str, type] = {
    "ChirpletSynth": ChirpletSynth,
    "DrumSynth": DrumSynth,
    "GranularChirpSynth": GranularChirpSynth,
    "TimeShift": TimeShift,
}

#: Keys of a graph config.
GRAPH_KEYS = ("num_samples", "num_channels", "order_method", "processors", "chain", "nodes", "edges")

#: Top-level keys of a run config.
RUN_KEYS = ("graph", "loss", "target_theta", "theta_init", "trainable")

IN, OUT, MIX = "in", "out", "mix"
_NAME_RE = re.compile(r"^[^.\[\]\s]+$")
_INDEXED_RE = re.compile(r"^(?P<base>[^\[\]\s]+?)(?:\[(?P<index>\d+)\])?$")


# --------------------------------------------------------------------------- graph configs


def _prefixed(err: Exception, prefix: str) -> Exception:
    """A plain ``TypeError`` or ``ValueError`` (after ``err``'s kind) with ``prefix`` before its message."""
    return (TypeError if isinstance(err, TypeError) else ValueError)(f"{prefix}: {err}")


def _check_mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _check_name(name: Any, where: str) -> str:
    """A node or type name: a non-empty string without dots, brackets or spaces."""
    if not isinstance(name, str):
        raise TypeError(f"{where}: names must be strings, got {name!r} ({type(name).__name__})")
    if not _NAME_RE.match(name):
        raise ValueError(f"{where}: invalid name {name!r} (no dots, brackets or spaces)")
    return name


def _check_count(spec: Mapping, key: str, default: Optional[int] = None) -> int:
    if key not in spec and default is None:
        raise ValueError(f"graph.{key} is missing")
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"graph.{key} must be a positive int, got {value!r}")
    return value


def _build_processor(node_type: str, item: Any) -> nn.Module:
    """Instantiate the processor of one node type from its ``class_path`` spec (or a bare class path)."""
    where = f"graph.processors.{node_type}"
    if isinstance(item, str):
        item = {"class_path": item}
    item = _check_mapping(item, where)
    if "class_path" not in item:
        raise ValueError(f"{where}: a processor spec needs 'class_path' (and optional 'init_args'), "
                         f"got keys {sorted(item)}")
    if not isinstance(item["class_path"], str):
        raise TypeError(f"{where}.class_path must be a string, got {type(item['class_path']).__name__}")
    if item.get("init_args") is not None:
        _check_mapping(item["init_args"], f"{where}.init_args")
    try:
        processor = instantiate(dict(item), PROCESSOR_ALIASES)
    except (ValueError, TypeError) as err:
        raise _prefixed(err, where) from None
    if not isinstance(processor, nn.Module):
        raise TypeError(f"{where}: {item['class_path']} built a {type(processor).__name__}, not an nn.Module")
    if not callable(getattr(processor, "parameter_size", None)):
        raise TypeError(f"{where}: {item['class_path']} has no parameter_size() method, "
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


def _chain_topology(chain: Any, processors: Mapping[str, nn.Module]):
    """Nodes and edges of ``in -> chain[0] -> ... -> chain[-1] -> out`` (nodes unnamed)."""
    if isinstance(chain, str) or not isinstance(chain, Sequence):
        raise TypeError(f"graph.chain must be a list of node types, got {type(chain).__name__}")
    if not chain:
        raise ValueError("graph.chain must list at least one node type")
    nodes = []
    for i, node_type in enumerate(chain):
        if not isinstance(node_type, str) or node_type not in processors:
            raise ValueError(f"graph.chain[{i}]: unknown node type {node_type!r}; "
                             f"graph.processors defines {list(processors)}")
        nodes.append((f"#{i}", node_type))
    names = [IN] + [name for name, _ in nodes] + [OUT]
    return nodes, list(zip(names[:-1], names[1:]))


def _parse_nodes(spec: Any, processors: Mapping[str, nn.Module]) -> List[Tuple[str, str]]:
    """``graph.nodes`` as ``(name, type)`` pairs, validated."""
    spec = _check_mapping(spec, "graph.nodes")
    if not spec:
        raise ValueError("graph.nodes must declare at least one node")
    allowed = list(processors) + [MIX, IN]
    nodes = []
    for name, node_type in spec.items():
        _check_name(name, "graph.nodes")
        if name in (IN, OUT):
            raise ValueError(f"graph.nodes: {name!r} is implicit and cannot be declared")
        if not isinstance(node_type, str) or node_type not in allowed:
            raise ValueError(f"graph.nodes.{name}: unknown node type {node_type!r}; "
                             f"choose from {allowed} (graph.processors and GRAFX utilities)")
        if name in processors and name != node_type:
            raise ValueError(f"graph.nodes.{name}: a node named after the processor type {name!r} "
                             f"must be of that type, got {node_type!r}")
        nodes.append((name, node_type))
    return nodes


def _parse_edges(spec: Any, names: Sequence[str]) -> List[Tuple[str, str]]:
    """``graph.edges`` as ``(source, destination)`` pairs between known nodes, no duplicates."""
    if isinstance(spec, str) or not isinstance(spec, Sequence):
        raise TypeError(f"graph.edges must be a list of [source, destination] pairs, got {type(spec).__name__}")
    if not spec:
        raise ValueError("graph.edges must list at least one edge")
    edges = []
    for i, edge in enumerate(spec):
        where = f"graph.edges[{i}]"
        if isinstance(edge, str) or not isinstance(edge, Sequence) or len(edge) != 2:
            raise ValueError(f"{where} must be a [source, destination] pair, got {edge!r}")
        src, dst = edge
        for end in (src, dst):
            if end not in names:
                raise ValueError(f"{where}: unknown node {end!r}; nodes are {list(names)}")
        if src == OUT:
            raise ValueError(f"{where}: 'out' cannot be the source of an edge")
        if dst == IN:
            raise ValueError(f"{where}: 'in' cannot be the destination of an edge")
        if src == dst:
            raise ValueError(f"{where}: self edge on {src!r}")
        if (src, dst) in edges:
            raise ValueError(f"{where}: duplicate edge {src!r} -> {dst!r}")
        edges.append((src, dst))
    return edges


def _check_topology(names: Sequence[str], edges: Sequence[Tuple[str, str]], inputs: Sequence[str]) -> None:
    """Every node but the ``inputs`` is fed, every node but ``out`` feeds something, and there is no cycle.

    GRAFX renders only nodes with an inlet, and a node whose output reaches
    nothing would render for no purpose, so both are configuration mistakes.
    """
    digraph = nx.DiGraph()
    digraph.add_nodes_from(names)
    digraph.add_edges_from(edges)
    for name in names:
        if name not in inputs and digraph.in_degree(name) == 0:
            raise ValueError(f"graph.edges: node {name!r} has no incoming edge")
        if name != OUT and digraph.out_degree(name) == 0:
            raise ValueError(f"graph.edges: node {name!r} has no outgoing edge")
    if not nx.is_directed_acyclic_graph(digraph):
        cycle = " -> ".join(src for src, _ in nx.find_cycle(digraph))
        raise ValueError(f"graph.edges: the graph has a cycle through {cycle}")
    # In a DAG every node is reachable from a source, and the inputs are the only sources.


def _explicit_topology(spec: Mapping, processors: Mapping[str, nn.Module]):
    if "nodes" not in spec:
        raise ValueError("graph.edges needs graph.nodes (name -> node type)")
    if "edges" not in spec:
        raise ValueError("graph.nodes needs graph.edges ([source, destination] pairs)")
    nodes = _parse_nodes(spec["nodes"], processors)
    names = [IN] + [name for name, _ in nodes] + [OUT]
    edges = _parse_edges(spec["edges"], names)
    _check_topology(names, edges, inputs=[IN] + [name for name, node_type in nodes if node_type == IN])
    return nodes, edges


def _make_grafx(processors: Mapping[str, nn.Module], nodes: Sequence[Tuple[str, str]],
                edges: Sequence[Tuple[str, str]], named: bool) -> GRAFX:
    """The GRAFX graph: node ids in the order ``in``, ``nodes``, ``out`` (this fixes the theta layout)."""
    graph = GRAFX(config=NodeConfigs(list(processors)))
    ids = {IN: graph.add(IN)}
    for name, node_type in nodes:
        ids[name] = graph.add(node_type, name=name if named else None)
    ids[OUT] = graph.add(OUT)
    for src, dst in edges:
        graph.connect(ids[src], ids[dst])
    return graph


def build_graph_synth(spec: Mapping[str, Any]) -> GraphSynth:
    """Build a :class:`~scrapl_graph.graph.GraphSynth` from a graph config.

    The config (a mapping, as loaded from YAML or JSON) has the keys

    - ``num_samples`` (int): signal length; ``num_channels`` (int, default 1);
      ``order_method`` (str, default ``"beam"``): GRAFX rendering-order method;
    - ``processors``: node type -> ``{"class_path": ..., "init_args": {...}}``
      (or a bare class path); ``class_path`` is an import path or one of
      :data:`PROCESSOR_ALIASES`. The mapping's order is the theta layout's
      type order;
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
            bad sizes, processors that cannot be built or lack
            ``parameter_size()``, processors whose ``num_samples`` differs from
            the graph's, both or neither of ``chain`` and ``nodes``/``edges``,
            unknown node types, edges to unknown nodes, duplicate or self
            edges, unfed or dangling nodes, and cycles.
    """
    spec = _check_mapping(spec, "graph")
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


# --------------------------------------------------------------------------- thetas


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


# --------------------------------------------------------------------------- run configs


def _build_run(config: Mapping[str, Any]) -> Dict[str, Any]:
    synth = build_graph_synth(config["graph"])
    try:
        loss = build_loss(config["loss"])
    except (ValueError, TypeError) as err:
        raise _prefixed(err, "loss") from None
    thetas = {}
    for key in ("target_theta", "theta_init"):
        value = config.get(key)
        try:
            thetas[key] = None if value is None else theta_from_spec(synth, value)
        except (ValueError, TypeError) as err:
            raise _prefixed(err, key) from None
    trainable = config.get("trainable")
    if trainable is not None:
        try:
            trainable = resolve_columns(trainable, synth.n_theta, synth.layout.labels())
        except (ValueError, TypeError) as err:
            raise _prefixed(err, "trainable") from None
    return {"synth": synth, "loss": loss, **thetas, "trainable": trainable}


def load_run_config(path: str) -> Dict[str, Any]:
    """Read a run config (``.yaml``, ``.yml`` or ``.json``) and build its objects.

    Top-level keys: ``graph`` (a graph config, see :func:`build_graph_synth`),
    ``loss`` (a registry name such as ``"scrapl"`` or a ``class_path`` spec,
    built by :func:`~scrapl_graph.losses.build_loss`), and the optional
    ``target_theta`` and ``theta_init`` (see :func:`theta_from_spec`) and
    ``trainable`` (layout labels, node types or parameter names, see
    :func:`~scrapl_graph.train.resolve_columns`).

    Args:
        path: the config file.

    Returns:
        ``{"synth": GraphSynth, "loss": nn.Module, "target_theta": Tensor (1, n_theta) or None,
        "theta_init": Tensor (1, n_theta) or None, "trainable": sorted column indices or None}``
        (``None`` where the key is absent or null).

    Raises:
        ValueError: for a missing or unreadable file, unknown or missing
            top-level keys, and every error of the parts (prefixed with the
            file and the key).
        TypeError: for a file that is not a mapping, and ill-typed parts.
    """
    config = load_config(path)
    if not isinstance(config, Mapping):
        raise TypeError(f"{path}: a run config must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(RUN_KEYS), key=str)
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; allowed: {list(RUN_KEYS)}")
    missing = [key for key in ("graph", "loss") if key not in config]
    if missing:
        raise ValueError(f"{path}: missing top-level key(s) {missing}")
    try:
        run = _build_run(config)
    except (ValueError, TypeError) as err:
        raise _prefixed(err, path) from None
    log.info("loaded run config %s: n_theta=%d, loss %s", path, run["synth"].n_theta, type(run["loss"]).__name__)
    return run
