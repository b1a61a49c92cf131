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

Modules:

- :mod:`.graph_config`: :func:`build_graph_synth`, a :class:`~scrapl_graph.graph.GraphSynth`
  from a graph config (wired by :mod:`.topology`);
- :mod:`.theta_spec`: :func:`theta_from_spec`, a theta ``(1, n_theta)`` from a flat list or
  from physical values;
- :mod:`.run_config`: :func:`load_run_config`, the synth, loss and thetas of a run config file.
"""
from .graph_config import GRAPH_KEYS, PROCESSOR_ALIASES, build_graph_synth
from .run_config import RUN_KEYS, load_run_config
from .theta_spec import theta_from_spec

__all__ = [
    "GRAPH_KEYS",
    "PROCESSOR_ALIASES",
    "RUN_KEYS",
    "build_graph_synth",
    "load_run_config",
    "theta_from_spec",
]
