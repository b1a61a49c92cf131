"""Losses: the full-tree JTFS loss and the per-path distance they share."""
from .distance import path_distance
from .jtfs_loss import JTFSLoss

__all__ = ["JTFSLoss", "path_distance"]
