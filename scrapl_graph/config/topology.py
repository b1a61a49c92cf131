"""Graph topology of a graph config: a chain, or explicit nodes and edges, wired into a GRAFX graph."""
from __future__ import annotations

import warnings
from typing import Any, List, Mapping, Sequence, Tuple

import networkx as nx
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # GRAFX's spurious torchaudio version warning
    from grafx.data import GRAFX, NodeConfigs

from .checks import _check_mapping, _check_name

IN, OUT, MIX = "in", "out", "mix"


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
