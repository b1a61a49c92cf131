"""scrapl-graph: SCRAPL scattering losses and differentiable processors for GRAFX graphs.

On import, glibc's malloc is told to keep freed memory for reuse
(:func:`scrapl_graph.allocator.tune_malloc`): a JTFS step allocates many large
buffers, and fresh pages from the kernel cost page faults. Set the
environment variable ``SCRAPL_GRAPH_TUNE_MALLOC=0`` to leave malloc alone.
"""
import os as _os

from .allocator import tune_malloc

if _os.environ.get("SCRAPL_GRAPH_TUNE_MALLOC", "1") != "0":
    tune_malloc()

from .jtfs import JTFS, PathInfo  # noqa: E402
from .losses import JTFSLoss, SCRAPLLoss  # noqa: E402

__version__ = "0.1.0"
__all__ = ["JTFS", "JTFSLoss", "PathInfo", "SCRAPLLoss", "tune_malloc", "__version__"]
