"""scrapl-graph: SCRAPL scattering losses and differentiable processors for GRAFX graphs."""
from .jtfs import JTFS, PathInfo
from .losses import JTFSLoss, SCRAPLLoss

__version__ = "0.1.0"
__all__ = ["JTFS", "JTFSLoss", "PathInfo", "SCRAPLLoss", "__version__"]
