"""Build any loss by name or from a ``{"class_path", "init_args"}`` config: SCRAPL, JTFS, MSS, P-loss, auraloss, sums.

Every audio loss built here is called as ``loss(input, target)`` on (batch,
channels, samples) tensors, so training code can swap them freely. The
parameter loss (``p_loss``) is called the same way on (batch, n_theta)
parameters and says so with its attribute ``compares = "theta"``.

Names and class paths take one road: a registry name stands for a class
(``"mss"`` for auraloss's ``MultiResolutionSTFTLoss`` with the paper's six
resolutions as default init_args), and jsonargparse builds it
(:func:`~scrapl_graph.io.build_object`), checking the arguments against the
class's signature.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Union

from torch import nn

from ..io import Alias, build_object
from .jtfs_loss import JTFSLoss
from .mss import MSS_SPECS, RevisitedMSSLoss
from .parameter import ParameterLoss
from .scrapl_loss import SCRAPLLoss

_MSS_SIZES = [64, 128, 256, 512, 1024, 2048]

#: Registry names -> the loss each builds: a class, an import path, or a
#: spec whose ``init_args`` are defaults (those given override them).
LOSSES: Dict[str, Alias] = {
    "scrapl": SCRAPLLoss,
    "jtfs": JTFSLoss,
    # auraloss multi-resolution STFT with 6 resolutions from 64 to 2048 (window = FFT size, hop = 1/4).
    "mss": {"class_path": "auraloss.freq.MultiResolutionSTFTLoss",
            "init_args": {"fft_sizes": _MSS_SIZES, "hop_sizes": [s // 4 for s in _MSS_SIZES],
                          "win_lengths": _MSS_SIZES}},
    # The paper's MSS variants and its supervised baseline (see .mss and .parameter).
    **MSS_SPECS,
    "mss_revisited": RevisitedMSSLoss,
    "p_loss": ParameterLoss,
    # A weighted sum of the losses here (an import path: loss_sum builds its terms with this registry).
    "loss_sum": "scrapl_graph.losses.loss_sum.LossSum",
    "multi_resolution_stft": "auraloss.freq.MultiResolutionSTFTLoss",
    "stft": "auraloss.freq.STFTLoss",
    "random_resolution_stft": "auraloss.freq.RandomResolutionSTFTLoss",
    "sum_and_difference_stft": "auraloss.freq.SumAndDifferenceSTFTLoss",
    "si_sdr": "auraloss.time.SISDRLoss",
    "sd_sdr": "auraloss.time.SDSDRLoss",
    "snr": "auraloss.time.SNRLoss",
    "esr": "auraloss.time.ESRLoss",
    "dc": "auraloss.time.DCLoss",
    "log_cosh": "auraloss.time.LogCoshLoss",
}
_ALIASES = {"mrstft": "multi_resolution_stft", "sisdr": "si_sdr", "sdsdr": "sd_sdr", "logcosh": "log_cosh",
            "parameter": "p_loss", "sum": "loss_sum"}
# Every name a class_path may hold, at any nesting level: registry names and their short forms.
_NAMES: Dict[str, Alias] = {**LOSSES, **{alias: LOSSES[name] for alias, name in _ALIASES.items()}}


def _registry_name(spec: Union[str, Mapping[str, Any]]) -> Union[str, Mapping[str, Any]]:
    """``spec`` with a registry name in any case (``"MRSTFT"``) spelt as in :data:`LOSSES`.

    Raises:
        ValueError: for a name without a dot that is not in the registry.
    """
    class_path = spec.get("class_path") if isinstance(spec, Mapping) else spec
    if not isinstance(class_path, str) or "." in class_path:
        return spec
    name = _ALIASES.get(class_path.lower(), class_path.lower())
    if name not in LOSSES:
        raise ValueError(f"loss: unknown loss {class_path!r}; known: {', '.join(sorted(LOSSES))}")
    return {**spec, "class_path": name} if isinstance(spec, Mapping) else name


def build_loss(spec: Union[str, Mapping[str, Any]], **kwargs) -> nn.Module:
    """Build a loss from a registry name or a class-path config, with jsonargparse.

    Args:
        spec: a name (``"scrapl"``, ``"jtfs"``, ``"mss"``, ``"mss_linear"``,
            ``"mss_log_linear"``, ``"mss_random"``, ``"mss_revisited"``, ``"p_loss"``,
            ``"multi_resolution_stft"``, ``"stft"``, ``"si_sdr"``, ``"esr"``, ``"loss_sum"``
            (:class:`~scrapl_graph.losses.LossSum`), ... see :data:`LOSSES`; any case)
            or a mapping ``{"class_path": "auraloss.freq.STFTLoss", "init_args": {...}}``
            (Lightning / jsonargparse style; ``class_path`` may also be a name,
            and init_args may hold nested specs).
        **kwargs: constructor arguments (merged over ``init_args``).

    Returns:
        The loss module.

    Raises:
        ValueError: unknown name, unimportable class, or a config with other
            keys; messages start with ``loss``.
        TypeError: a spec of another type, a class that is not an
            ``nn.Module``, or arguments that do not fit its signature
            (unknown, missing or ill-typed; jsonargparse's message, after the
            config path such as ``loss.init_args.J``).
    """
    if not isinstance(spec, (str, Mapping)):
        raise TypeError(f"loss: must be a name or a mapping, got {type(spec).__name__}")
    spec = _registry_name(spec)
    if kwargs:
        if isinstance(spec, str):
            spec = {"class_path": spec, "init_args": kwargs}
        elif isinstance(spec.get("init_args") or {}, Mapping):  # other init_args: build_object names the error
            spec = {**spec, "init_args": {**(spec.get("init_args") or {}), **kwargs}}
    return build_object(spec, nn.Module, where="loss", aliases=_NAMES)
