"""The parts of the SCRAPL algorithm, each usable alone.

- :mod:`.sampler`: path probabilities, seeded draws, visit counts, rank sync;
- :mod:`.pathwise`: P-Adam / P-SAGA (Algorithm 1), one implementation, and its
  hook form; :mod:`.optim`: its ``torch.optim.Optimizer`` form;
- :mod:`.side_grads`: gradients of terms summed beside SCRAPL, added after P-Adam/P-SAGA;
- :mod:`.curvature`: theta-IS curvature (power iteration on Hessian-vector products);
- :mod:`.importance`: path probabilities from importance values (eq. 10);
- :mod:`.order_share`: first- and second-order paths with a fixed share of probability mass;
- :mod:`.warmup` and :mod:`.warmup_store`: the warmup loop and its directory;
- :mod:`.probs_file`: probability files that carry their path set.

None of these imports the losses; :class:`scrapl_graph.SCRAPLLoss` composes them.
"""
from .importance import AGGREGATIONS, ImportanceTable, aggregate_vals
from .optim import PathwiseAdamSAGA
from .pathwise import PathwiseConfig, PathwiseHooks, pathwise_step
from .sampler import PathSampler, check_probs, synchronize_path
from .side_grads import SideGradients

__all__ = [
    "AGGREGATIONS",
    "ImportanceTable",
    "PathSampler",
    "PathwiseAdamSAGA",
    "PathwiseConfig",
    "PathwiseHooks",
    "SideGradients",
    "aggregate_vals",
    "check_probs",
    "pathwise_step",
    "synchronize_path",
]
