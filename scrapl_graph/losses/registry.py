"""Build any loss by name or from a ``{"class_path", "init_args"}`` config: SCRAPL, JTFS, MSS, P-loss, auraloss.

Every audio loss built here is called as ``loss(input, target)`` on (batch,
channels, samples) tensors, so training code can swap them freely. The
parameter loss (``p_loss``) is called the same way on (batch, n_theta)
parameters and says so with its attribute ``compares = "theta"``.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Mapping, Union

from torch import nn

from ..io import import_object
from .jtfs_loss import JTFSLoss
from .mss import RevisitedMSSLoss, mss_linear, mss_log_linear, mss_random
from .parameter import ParameterLoss
from .scrapl_loss import SCRAPLLoss


def _auraloss(module: str, name: str) -> Callable[..., nn.Module]:
    def build(**kwargs):
        return getattr(importlib.import_module(f"auraloss.{module}"), name)(**kwargs)

    build.__name__ = name
    return build


def _mss_paper(**kwargs) -> nn.Module:
    """auraloss multi-resolution STFT with 6 resolutions from 64 to 2048 (window = FFT size, hop = 1/4)."""
    sizes = [64, 128, 256, 512, 1024, 2048]
    defaults = dict(fft_sizes=sizes, hop_sizes=[s // 4 for s in sizes], win_lengths=sizes)
    defaults.update(kwargs)
    return _auraloss("freq", "MultiResolutionSTFTLoss")(**defaults)


LOSSES: Dict[str, Callable[..., nn.Module]] = {
    "scrapl": SCRAPLLoss,
    "jtfs": JTFSLoss,
    "mss": _mss_paper,
    "mss_linear": mss_linear,
    "mss_log_linear": mss_log_linear,
    "mss_random": mss_random,
    "mss_revisited": RevisitedMSSLoss,
    "p_loss": ParameterLoss,
    "multi_resolution_stft": _auraloss("freq", "MultiResolutionSTFTLoss"),
    "stft": _auraloss("freq", "STFTLoss"),
    "random_resolution_stft": _auraloss("freq", "RandomResolutionSTFTLoss"),
    "sum_and_difference_stft": _auraloss("freq", "SumAndDifferenceSTFTLoss"),
    "si_sdr": _auraloss("time", "SISDRLoss"),
    "sd_sdr": _auraloss("time", "SDSDRLoss"),
    "snr": _auraloss("time", "SNRLoss"),
    "esr": _auraloss("time", "ESRLoss"),
    "dc": _auraloss("time", "DCLoss"),
    "log_cosh": _auraloss("time", "LogCoshLoss"),
}
_ALIASES = {"mrstft": "multi_resolution_stft", "sisdr": "si_sdr", "sdsdr": "sd_sdr", "logcosh": "log_cosh",
            "parameter": "p_loss"}


def build_loss(spec: Union[str, Mapping[str, Any]], **kwargs) -> nn.Module:
    """Build a loss from a registry name or a class-path config.

    Args:
        spec: a name (``"scrapl"``, ``"jtfs"``, ``"mss"``, ``"mss_linear"``,
            ``"mss_log_linear"``, ``"mss_random"``, ``"mss_revisited"``,
            ``"p_loss"``, ``"multi_resolution_stft"``, ``"stft"``, ``"si_sdr"``,
            ``"esr"``, ... see ``LOSSES``) or a mapping
            ``{"class_path": "auraloss.freq.STFTLoss", "init_args": {...}}``
            (Lightning / jsonargparse style; ``class_path`` may also be a name).
        **kwargs: constructor arguments (merged over ``init_args``).

    Returns:
        The loss module.

    Raises:
        ValueError: unknown name, unimportable class, or a config with other keys.
        TypeError: bad argument types, or a class that is not an ``nn.Module``.
    """
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"class_path", "init_args"}
        if unknown or "class_path" not in spec:
            raise ValueError(f"a loss config needs 'class_path' and optional 'init_args', got keys {sorted(spec)}")
        init_args = dict(spec.get("init_args") or {})
        if not isinstance(init_args, dict):
            raise TypeError(f"init_args must be a mapping, got {type(spec['init_args']).__name__}")
        init_args.update(kwargs)
        target = spec["class_path"]
        if not isinstance(target, str):
            raise TypeError(f"class_path must be a string, got {type(target).__name__}")
        if "." not in target:
            return build_loss(target, **init_args)
        cls = import_object(target)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"{target} is not an nn.Module class")
        return cls(**init_args)
    if not isinstance(spec, str):
        raise TypeError(f"loss spec must be a name or a mapping, got {type(spec).__name__}")
    name = _ALIASES.get(spec.lower(), spec.lower())
    if name not in LOSSES:
        raise ValueError(f"unknown loss {spec!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**kwargs)
