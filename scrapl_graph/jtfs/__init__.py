"""Joint time-frequency scattering: filterbanks, path set and the transform."""
from .layout import PathInfo
from .transform import JTFS

__all__ = ["JTFS", "PathInfo"]
