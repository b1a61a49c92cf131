"""Losses: SCRAPL, the full-tree JTFS loss, and the per-path distance they share."""
from .distance import path_distance
from .jtfs_loss import JTFSLoss
from .registry import LOSSES, build_loss
from .scrapl_loss import SCRAPLLoss

__all__ = ["JTFSLoss", "LOSSES", "SCRAPLLoss", "build_loss", "path_distance"]
