"""Fit a graph's parameters to one recording, and the paper's parameter error.

:func:`optimize_graph` takes any loss of :mod:`scrapl_graph.losses` (a
registry name, a ``{"class_path", "init_args"}`` config or a module):

- :mod:`.run`: the one place where a loss meets a run (its default
  optimizer, hooks, seeding) and the gradient step;
- :mod:`.optimize`: :func:`optimize_graph` fits the flat parameter vector
  theta of a :class:`~scrapl_graph.graph.GraphSynth` to one target recording;
- :mod:`.tbptt`: :func:`tbptt_optimize` fits a graph of stateful effects to
  long recordings with truncated backpropagation through time;
- :mod:`.metrics`: the paper's parameter error.

Training an encoder that predicts theta from audio (``audio -> encoder ->
theta -> synth -> audio_hat``, the paper's section 3.4) is the Lightning
layer's: :func:`scrapl_graph.lightning.train_predictor` for tensors in
memory, ``scrapl-graph fit --config FILE`` for configs.
"""
from ..graph.columns import resolve_columns
from .metrics import normalized_param_error
from .optimize import OptimizeResult, optimize_graph
from .tbptt import TBPTTResult, sliding_windows, tbptt_memory_pass, tbptt_optimize

__all__ = [
    "OptimizeResult",
    "TBPTTResult",
    "normalized_param_error",
    "optimize_graph",
    "resolve_columns",
    "sliding_windows",
    "tbptt_memory_pass",
    "tbptt_optimize",
]
