"""Losses: SCRAPL, the full-tree JTFS loss, the per-path distance they share, and the paper's baselines."""
from .distance import path_distance
from .jtfs_loss import JTFSLoss
from .mss import RevisitedMSSLoss
from .parameter import ParameterLoss
from .registry import LOSSES, build_loss
from .scrapl_loss import SCRAPLLoss

__all__ = ["JTFSLoss", "LOSSES", "ParameterLoss", "RevisitedMSSLoss", "SCRAPLLoss", "build_loss", "path_distance"]
