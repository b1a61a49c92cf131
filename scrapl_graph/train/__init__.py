"""Training loops: optimize a graph's parameters directly, or train a network that predicts them.

Both loops take any loss of :mod:`scrapl_graph.losses` (a registry name, a
``{"class_path", "init_args"}`` config or a module) and share their parts:

- :mod:`.run`: the one place where a loss meets a run (its default
  optimizer, hooks, seeding) and the gradient step;
- :mod:`.optimize`: :func:`optimize_graph` fits the flat parameter vector
  theta of a :class:`~scrapl_graph.graph.GraphSynth` to one target recording;
- :mod:`.predictor`: :func:`train_predictor` trains an encoder audio -> theta
  with the synth as a fixed differentiable decoder (``audio -> encoder ->
  theta -> synth -> audio_hat``, the paper's section 3.4);
- :mod:`.tbptt`: :func:`tbptt_optimize` fits a graph of stateful effects to
  long recordings with truncated backpropagation through time;
- :mod:`.metrics`: the paper's parameter error.
"""
from ..graph.columns import resolve_columns
from .metrics import normalized_param_error
from .optimize import OptimizeResult, optimize_graph
from .predictor import TrainResult, evaluate_predictor, train_predictor
from .tbptt import TBPTTResult, sliding_windows, tbptt_memory_pass, tbptt_optimize

__all__ = [
    "OptimizeResult",
    "TBPTTResult",
    "TrainResult",
    "evaluate_predictor",
    "normalized_param_error",
    "optimize_graph",
    "resolve_columns",
    "sliding_windows",
    "tbptt_memory_pass",
    "tbptt_optimize",
    "train_predictor",
]
