"""scrapl-graph: SCRAPL scattering losses and differentiable processors for GRAFX graphs."""
from .jtfs import JTFS, PathInfo
from .losses import JTFSLoss

__version__ = "0.1.0"
__all__ = ["JTFS", "JTFSLoss", "PathInfo", "__version__"]
