"""Chunked rendering: a long input through a graph in consecutive sub-sequences.

A graph of causal processors can render a long input chunk by chunk: each
stateful effect (:class:`~scrapl_graph.processors.StatefulEffect`) ends a
chunk in a state (an LFO phase, filter memory, the cached padding of a delay
line) that the next chunk starts from, and memoryless processors (GRAFX's
gains, panning, mid/side conversions and ``mix`` nodes) need nothing. The
concatenated chunks then equal one render of the whole input, up to float
rounding (tested to 1e-4 of the peak in float32, 1e-10 in float64).

Scope: processors that look ahead (GRAFX's zero-phase FIR equalisers, FFT
and noise reverbs, its compressors that filter the whole signal at once) or
generate a fixed length (this package's synths) cannot be chunked this way
and are refused; none of them declares a latency, so no latency is honoured.

The same renderer serves truncated backpropagation through time
(:mod:`scrapl_graph.train.tbptt`): :meth:`ChunkedRenderer.detach_states`
keeps the states' values and cuts their gradient between chunks.
"""
from __future__ import annotations

import math
from typing import List

import torch
from torch import Tensor, nn

from ..processors.stateful import StatefulEffect
from .synth import GraphSynth

__all__ = ["MEMORYLESS_GRAFX", "ChunkedRenderer", "chunk_alignment"]

#: GRAFX processors without memory or look-ahead (class names): safe in chunks.
MEMORYLESS_GRAFX = ("StereoGain", "SideGainImager", "MonoToStereo", "StereoToMidSide", "MidSideToStereo")


def _stateful(synth: GraphSynth) -> List[StatefulEffect]:
    return [p for p in synth.processors.values() if isinstance(p, StatefulEffect)]


def chunk_alignment(synth: GraphSynth) -> int:
    """The sample count every chunk but the last must be a multiple of.

    It is the least common multiple of the effects' ``block_size`` (their
    coefficients are updated on a fixed block grid that must not shift).

    Raises:
        ValueError: if a processor is neither a causal effect nor a memoryless GRAFX processor.
    """
    align = 1
    for name, processor in synth.processors.items():
        if isinstance(processor, StatefulEffect) and processor.causal:
            align = math.lcm(align, processor.block_size)
        elif type(processor).__name__ not in MEMORYLESS_GRAFX:
            raise ValueError(f"processor {name!r} ({type(processor).__name__}) cannot be rendered in chunks: only "
                             f"causal effects (StatefulEffect) and memoryless GRAFX processors {MEMORYLESS_GRAFX} can")
    return align


class ChunkedRenderer(nn.Module):
    """Render a :class:`GraphSynth` chunk by chunk, carrying the effects' states.

    Usage::

        renderer = ChunkedRenderer(synth)
        renderer.reset_states()
        for chunk in chunks:                 # consecutive, each a multiple of renderer.alignment
            y = renderer.render_chunk(theta, chunk)
            ...
            renderer.detach_states()          # optional: truncated backpropagation

    Args:
        synth: the graph; every processor must be chunkable (see :func:`chunk_alignment`).

    Raises:
        TypeError: if ``synth`` is not a GraphSynth. ValueError: for a processor that cannot be chunked.
    """

    def __init__(self, synth: GraphSynth):
        super().__init__()
        if not isinstance(synth, GraphSynth):
            raise TypeError(f"synth must be a GraphSynth, got {type(synth).__name__}")
        self.synth = synth
        self.alignment = chunk_alignment(synth)
        self._ragged = False  # a chunk off the block grid ended the stream

    def reset_states(self) -> None:
        """Start a new stream: every effect starts from its initial state."""
        for effect in _stateful(self.synth):
            effect.reset_states()
        self._ragged = False

    def detach_states(self) -> None:
        """Keep the states' values, drop their autograd history."""
        for effect in _stateful(self.synth):
            effect.detach_states()

    def render_chunk(self, theta: Tensor, input_chunk: Tensor) -> Tensor:
        """Render the next chunk of the stream.

        Args:
            theta: ``(B, n_theta)``; the same batch size for every chunk of a stream.
            input_chunk: ``(B, n_in, C, T)`` (or ``(B, C, T)``).

        Returns:
            Tensor ``(B, C, T)``.

        Raises:
            ValueError: if a previous chunk's length was not a multiple of
                :attr:`alignment` (only the last chunk of a stream may be).
        """
        if self._ragged:
            raise ValueError(f"only the last chunk of a stream may have a length that is not a multiple of "
                             f"{self.alignment}; call reset_states() to start a new stream")
        effects = _stateful(self.synth)
        for effect in effects:
            effect.streaming = True
            effect.begin_render()
        try:
            out = self.synth.render(theta, input_chunk)
        finally:
            for effect in effects:
                effect.streaming = False
        self._ragged = input_chunk.shape[-1] % self.alignment != 0
        return out

    def render(self, theta: Tensor, input_signals: Tensor, chunk_size: int,
               detach: bool = False) -> Tensor:
        """Render a whole input in chunks of ``chunk_size`` from fresh states; returns ``(B, C, T)``.

        Args:
            theta, input_signals: as for :meth:`GraphSynth.render`.
            chunk_size: samples per chunk, a multiple of :attr:`alignment`.
            detach: detach the states between chunks (the output values do not change).

        Raises:
            ValueError: for a chunk size off the block grid.
        """
        if chunk_size < 1 or chunk_size % self.alignment:
            raise ValueError(f"chunk_size must be a positive multiple of {self.alignment}, got {chunk_size}")
        self.reset_states()
        outs: List[Tensor] = []
        for start in range(0, input_signals.shape[-1], chunk_size):
            outs.append(self.render_chunk(theta, input_signals[..., start:start + chunk_size]))
            if detach:
                self.detach_states()
        self.reset_states()
        return torch.cat(outs, dim=-1)

