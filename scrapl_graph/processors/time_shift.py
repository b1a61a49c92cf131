"""Random misalignment of audio by a whole number of samples."""
from __future__ import annotations

import logging
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from ._common import RandomSource, check_positive_int

log = logging.getLogger(__name__)

SHIFT_MODES = ("zero", "circular")


class TimeShift(nn.Module):
    r"""Shift each node's audio by a random number of samples.

    For a shift ``d`` (positive = later), ``y[n] = x[n - d]``. Indices that
    fall outside ``[0, L)`` read zeros in ``"zero"`` mode (the signal slides
    out of the frame and silence slides in) and wrap around in
    ``"circular"`` mode (``y[n] = x[(n - d) mod L]``, no energy is lost).
    Both are a gather, so the output is differentiable with respect to the
    input audio; the shift itself is discrete and has no gradient.

    Shifts are drawn per node, uniformly from the integers in
    ``[-max_shift, max_shift]``, from the processor's random source, or come
    from the ``shift`` argument of :meth:`forward`. The processor has no
    learnable parameters (``parameter_size() == {}``); in a GRAFX graph it
    misaligns a synth's output as in the paper's "meso" setting (up to 2048
    samples).

    Args:
        max_shift (int): largest shift magnitude in samples (paper: 2048).
        mode (str): ``"zero"`` (default) or ``"circular"``.
        seed, generator, deterministic: source of the shifts, see
            :class:`~scrapl_graph.processors._common.RandomSource`.

    Raises:
        ValueError / TypeError: for a negative ``max_shift`` or unknown mode.
    """

    def __init__(self, max_shift: int = 2048, mode: str = "zero", seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, deterministic: bool = False):
        super().__init__()
        self.max_shift = check_positive_int(max_shift, "max_shift", minimum=0)
        if mode not in SHIFT_MODES:
            raise ValueError(f"mode must be one of {SHIFT_MODES}, got {mode!r}")
        self.mode = mode
        self.random = RandomSource(seed=seed, generator=generator, deterministic=deterministic)

    def parameter_size(self) -> Dict[str, tuple]:
        """No learnable parameters."""
        return {}

    def draw_shifts(self, num_nodes: int, seed: Optional[Tensor] = None) -> Tensor:
        """Random shifts, integers in ``[-max_shift, max_shift]``, shape ``(nodes,)``."""
        gens = self.random.node_generators(num_nodes, seed)
        return torch.stack([
            torch.randint(-self.max_shift, self.max_shift + 1, (), generator=g) for g in gens
        ]) if num_nodes else torch.zeros(0, dtype=torch.long)

    def forward(self, input_signals: Tensor, shift: Optional[Tensor] = None,
                seed: Optional[Tensor] = None) -> Tensor:
        """Shift the audio of every node.

        Args:
            input_signals: ``(nodes, channels, samples)``.
            shift: optional integer tensor ``(nodes,)`` of shifts to apply
                instead of random ones (any magnitude).
            seed: optional integer tensor ``(nodes,)`` of per-node seeds.

        Returns:
            Tensor of the same shape as ``input_signals``.

        Raises:
            TypeError: if the input is not a floating-point tensor or ``shift``
                not an integer tensor.
            ValueError: for mis-shaped inputs, or if ``max_shift`` is not
                smaller than the signal length.
        """
        if not torch.is_tensor(input_signals) or not input_signals.is_floating_point():
            raise TypeError("input_signals must be a floating-point torch.Tensor")
        if input_signals.ndim != 3 or 0 in input_signals.shape[:2]:
            raise ValueError(f"input_signals must have shape (nodes, channels, samples) with at least one node and "
                             f"channel, got {tuple(input_signals.shape)}")
        nodes, _, length = input_signals.shape
        if shift is None:
            if self.max_shift >= length:
                raise ValueError(f"max_shift={self.max_shift} must be smaller than the signal length {length}")
            shift = self.draw_shifts(nodes, seed)
        else:
            if not torch.is_tensor(shift) or shift.is_floating_point() or shift.is_complex():
                raise TypeError("shift must be an integer tensor of shape (nodes,)")
            if shift.ndim == 2 and shift.shape[1] == 1:
                shift = shift[:, 0]
            if shift.shape != (nodes,):
                raise ValueError(f"shift must have shape ({nodes},), got {tuple(shift.shape)}")
        shift = shift.to(input_signals.device)

        source = torch.arange(length, device=input_signals.device)[None, :] - shift[:, None]
        if self.mode == "circular":
            source = source.remainder(length)
            valid = None
        else:
            valid = (source >= 0) & (source < length)
            source = source.clamp(0, length - 1)
        index = source[:, None, :].expand_as(input_signals)
        out = input_signals.gather(-1, index)
        if valid is not None:
            out = out * valid[:, None, :].to(out.dtype)
        return out


class OnsetShift(TimeShift):
    """A :class:`~scrapl_graph.processors.TimeShift` by ``offset`` plus a random shift in ``[-max_shift, max_shift]``.

    With ``offset = max_shift`` a sound that starts at sample 0 starts
    somewhere in ``[0, 2 max_shift]``: misaligned, with its attack intact.
    """

    def __init__(self, max_shift: int = 2048, offset: int = 2048, **kwargs):
        super().__init__(max_shift=max_shift, mode="zero", **kwargs)
        self.offset = int(offset)

    def draw_shifts(self, num_nodes: int, seed: Optional[Tensor] = None) -> Tensor:
        return super().draw_shifts(num_nodes, seed) + self.offset
