"""scrapl-graph: SCRAPL scattering losses and differentiable processors for GRAFX graphs.

Importing the package changes nothing outside it. The CPU allocator tuning
that speeds up JTFS steps (:func:`scrapl_graph.allocator.tune_malloc`) is
opt-in: call it, or pass ``--tune-malloc`` to ``scrapl-graph``.
"""
from .jtfs import JTFS, PathInfo
from .losses import JTFSLoss, SCRAPLLoss
from .scrapl import PathwiseAdamSAGA

__version__ = "0.1.0"
__all__ = ["JTFS", "JTFSLoss", "PathInfo", "PathwiseAdamSAGA", "SCRAPLLoss", "__version__"]
