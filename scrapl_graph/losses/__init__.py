"""Losses: SCRAPL, the full-tree JTFS loss, the per-path distance they share, the paper's baselines, and weighted sums."""
from .distance import path_distance
from .jtfs_loss import JTFSLoss
from .loss_sum import LossSum, scrapl_term_of
from .mss import RevisitedMSSLoss
from .parameter import ParameterLoss
from .registry import LOSSES, build_loss
from .scrapl_loss import SCRAPLLoss

__all__ = ["JTFSLoss", "LOSSES", "LossSum", "ParameterLoss", "RevisitedMSSLoss", "SCRAPLLoss", "build_loss",
           "path_distance", "scrapl_term_of"]
