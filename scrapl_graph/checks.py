"""Input checks shared by the transform and the losses, with one rule for checks that read values.

Shape, dtype and device checks read no tensor value and always run. A check
of the values (finiteness) needs a host read, which on CUDA waits for the
device to finish its queue: it runs on CPU tensors by default and on CUDA
tensors only when asked, with ``check_values=True`` on the module or with the
environment variable ``SCRAPL_GRAPH_CHECK_VALUES=1``; ``check_values=False``
turns it off everywhere.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import torch
from torch import Tensor


def wants_value_check(t: Tensor, check_values: Optional[bool] = None) -> bool:
    """Whether a value check of ``t`` should run (see the module docstring)."""
    if check_values is not None:
        return bool(check_values)
    if t.device.type == "cpu":
        return True
    return os.environ.get("SCRAPL_GRAPH_CHECK_VALUES", "0") not in ("", "0")


def check_finite(t: Tensor, name: str, check_values: Optional[bool] = None, what: str = "audio samples") -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or Inf (when the value-check rule says so)."""
    if t.numel() == 0 or not wants_value_check(t, check_values):
        return
    # A finite sum proves every element finite; only overflow needs the elementwise check.
    with torch.no_grad():
        finite = bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or Inf values; expected finite {what}")


def check_real_float(t: object, name: str) -> Tensor:
    """A real floating-point tensor, else ``TypeError`` naming what was expected."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_complex() or not t.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor (float32 or float64), got dtype {t.dtype}")
    return t


def check_audio(t: object, name: str, min_length: int = 2) -> Tensor:
    """An auraloss-style ``(batch, channels, samples)`` signal with at least one example and channel.

    Raises:
        TypeError: for a non-tensor or a dtype that is not real floating point.
        ValueError: for another number of axes, an empty batch or channel axis,
            or fewer than ``min_length`` samples.
    """
    t = check_real_float(t, name)
    if t.ndim != 3:
        raise ValueError(f"{name} must have shape (batch, channels, samples), got {tuple(t.shape)}")
    batch, channels, length = t.shape
    if batch == 0 or channels == 0:
        raise ValueError(f"{name} has shape {tuple(t.shape)}: need at least one example and one channel")
    if length < min_length:
        raise ValueError(f"{name} has {length} samples, need at least {min_length}")
    return t


def check_pair(x: object, x_target: object, device: Optional[torch.device] = None,
               min_length: int = 2, check_values: Optional[bool] = None) -> Tuple[int, int]:
    """Validate an estimate/target pair of audio; return (batch * channels, samples).

    Raises:
        TypeError: for non-tensors or non-real-floating dtypes.
        ValueError: for a wrong or empty shape, mismatched shapes, dtypes or
            devices, a device other than ``device`` (the module's), or NaN/Inf
            values (see the value-check rule).
    """
    x = check_audio(x, "x", min_length)
    x_target = check_audio(x_target, "x_target", min_length)
    if x.shape != x_target.shape:
        raise ValueError(f"x and x_target must have the same shape, got {tuple(x.shape)} and {tuple(x_target.shape)}")
    if x.dtype != x_target.dtype or x.device != x_target.device:
        raise ValueError(f"x and x_target must share dtype and device, got {x.dtype}/{x.device} and "
                         f"{x_target.dtype}/{x_target.device}")
    if device is not None and x.device != device:
        raise ValueError(f"x is on {x.device} but the loss is on {device}: move the loss with .to({str(x.device)!r})")
    check_finite(x, "x", check_values)
    check_finite(x_target, "x_target", check_values)
    return x.shape[0] * x.shape[1], x.shape[2]


def check_signal(x: object, length: int, dtype: torch.dtype, device: torch.device,
                 check_values: Optional[bool] = None) -> Tensor:
    """A transform's input (..., length): real floating point of the transform's dtype and device."""
    x = check_real_float(x, "x")
    if x.dtype != dtype:
        raise TypeError(f"x has dtype {x.dtype} but the filters are {dtype}; "
                        f"convert the module with .to({x.dtype}) or the input with .to({dtype})")
    if x.ndim < 1:
        raise ValueError("x must have at least one dimension (..., N), got a 0-d tensor")
    if x.shape[-1] != length:
        raise ValueError(f"x has length {x.shape[-1]} on its last axis, expected shape={length}")
    if x.numel() == 0:
        raise ValueError(f"x has shape {tuple(x.shape)}: no signal to transform (an axis of size 0)")
    if x.device != device:
        raise ValueError(f"x is on {x.device} but the filters are on {device}; move the module with .to(device)")
    check_finite(x, "x", check_values)
    return x
