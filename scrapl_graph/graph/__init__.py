"""A GRAFX audio graph as a differentiable synth of a flat parameter vector theta.

GRAFX renders a graph from per-type parameter dictionaries,
``{node_type: {param_name: tensor (nodes_of_type, *shape)}}``, with shapes
given by each processor's ``parameter_size()``. SCRAPL (and a predictor
network) work with a flat ``theta`` of shape ``(B, n_theta)``, one row per
example. This package maps one to the other:

- :class:`ThetaLayout` (:mod:`.layout`) lays the parameters of one graph
  instance out in theta: processor types in the order of the ``processors``
  mapping, then parameter names in ``parameter_size()`` order (nested dicts
  depth first), then nodes of the type in node-id order, then the
  parameter's own shape in C order. ``n_theta`` is the sum of
  ``nodes * prod(shape)``.
- :class:`GraphSynth` (:mod:`.synth`) renders a batch of thetas through
  ``grafx.render``: GRAFX shares one parameter set across the batch axis of
  a 4-D input, so the batch is rendered as one graph made of ``B``
  disconnected copies, whose per-type parameter rows are permuted to
  GRAFX's rendering order.
- :func:`resolve_columns` (:mod:`.columns`) selects theta columns by index,
  mask or layout label.
- :class:`ChunkedRenderer` (:mod:`.chunked`) renders a long input through
  a graph of causal effects in consecutive chunks, carrying their states.
- :func:`make_predictor_head` (:mod:`.heads`) sizes a predictor's output
  layer from a layout.
"""
from .chunked import MEMORYLESS_GRAFX, ChunkedRenderer, chunk_alignment
from .columns import resolve_columns
from .heads import make_predictor_head
from .layout import ThetaEntry, ThetaLayout
from .synth import UTILITY_TYPES, GraphSynth, render_theta

__all__ = [
    "MEMORYLESS_GRAFX",
    "ChunkedRenderer",
    "chunk_alignment",
    "UTILITY_TYPES",
    "GraphSynth",
    "ThetaEntry",
    "ThetaLayout",
    "make_predictor_head",
    "render_theta",
    "resolve_columns",
]
