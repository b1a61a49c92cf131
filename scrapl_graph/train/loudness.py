"""Frame-loudness error of a drum match: how far the level envelope of a result is from its target's.

Parameter errors say nothing about what a listener hears when two parameter
sets sound alike, and none of the package's losses measures this directly,
so it judges them all fairly. Both signals are cut into frames, each frame's
level is its RMS in dB, the two level curves are aligned at their onsets and
compared frame by frame:

    err = mean_{f in A} | L_x(f) - L_y(f) |,
    L(f) = max(20 log10 rms(frame f), P_y - floor_db),

with ``P_y`` the target's peak frame level, and ``A`` the frames where either
signal is within ``range_db`` of ``P_y`` (what is audible next to the
target's peak). The frames are split into the transient (frames starting in
the first ``transient_s`` after the onset) and the decay (the rest).

The defaults are 1024-sample frames with hop 256 at 44.1 kHz; other sample
rates keep the durations (23.2 ms frames, 5.8 ms hop).
"""
from __future__ import annotations

import math
from typing import Dict

import torch
from torch import Tensor

FRAME_S = 1024 / 44100
HOP_S = 256 / 44100


def frame_levels_db(x: Tensor, frame: int, hop: int) -> Tensor:
    """RMS level in dB of each frame of ``x`` ``(..., samples)`` (zero-padded at the end to whole frames)."""
    n = x.shape[-1]
    n_frames = max(1, math.ceil(max(n - frame, 0) / hop) + 1)
    padded = torch.nn.functional.pad(x, (0, (n_frames - 1) * hop + frame - n))
    frames = padded.unfold(-1, frame, hop)
    return 10 * torch.log10(frames.pow(2).mean(dim=-1).clamp_min(1e-20))


def onset_sample(x: Tensor, threshold_db: float = -20.0) -> Tensor:
    """Index of the first sample whose magnitude is within ``threshold_db`` of the signal's peak, per row."""
    mag = x.abs()
    peak = mag.amax(dim=-1, keepdim=True)
    above = mag >= peak * 10 ** (threshold_db / 20)
    return above.float().argmax(dim=-1)


def frame_loudness_error(x: Tensor, target: Tensor, sample_rate: float, *, transient_s: float = 0.05,
                         floor_db: float = 80.0, range_db: float = 60.0) -> Dict[str, Tensor]:
    """Mean absolute frame-level difference (dB) of ``x`` against ``target`` over the transient and the decay.

    Args:
        x, target: audio ``(batch, samples)`` or ``(batch, channels, samples)``
            (channels are averaged), the same shape.
        sample_rate: in Hz; sets the frame and hop lengths (see the module).
        transient_s: length of the transient after the onset, in seconds.
        floor_db: levels are floored this far below the target's peak frame level.
        range_db: frames count where either level is within this of the target's peak.

    Returns:
        ``{"transient": (batch,), "decay": (batch,)}`` errors in dB; NaN for
        an example with no audible frame in that part.

    Raises:
        ValueError: for shapes that differ or have no samples, or a non-positive rate.
    """
    if x.shape != target.shape or x.shape[-1] == 0:
        raise ValueError(f"x {tuple(x.shape)} and target {tuple(target.shape)} must have the same non-empty shape")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    x, target = x.detach(), target.detach()
    if x.ndim == 3:
        x, target = x.mean(dim=1), target.mean(dim=1)
    frame = max(2, round(FRAME_S * sample_rate))
    hop = max(1, round(HOP_S * sample_rate))
    transient_frames = math.ceil(transient_s * sample_rate / hop)
    out = {"transient": [], "decay": []}
    for xb, yb in zip(x, target):
        # Onset alignment: each signal's level curve starts at its own onset.
        xb, yb = xb[int(onset_sample(xb)):], yb[int(onset_sample(yb)):]
        n = min(xb.shape[-1], yb.shape[-1])
        lx, ly = frame_levels_db(xb[:n], frame, hop), frame_levels_db(yb[:n], frame, hop)
        peak = ly.max()
        lx, ly = lx.clamp_min(peak - floor_db), ly.clamp_min(peak - floor_db)
        audible = (lx >= peak - range_db) | (ly >= peak - range_db)
        diff = (lx - ly).abs()
        is_transient = torch.arange(len(diff)) < transient_frames
        for part, mask in (("transient", audible & is_transient), ("decay", audible & ~is_transient)):
            out[part].append(diff[mask].mean() if mask.any() else diff.new_tensor(float("nan")))
    return {part: torch.stack(values) for part, values in out.items()}
