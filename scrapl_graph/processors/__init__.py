"""Differentiable synths and effects that follow GRAFX's processor protocol.

Each processor is an ``nn.Module`` with ``forward(input_signals, **params)``
batched over nodes and ``parameter_size()``; parameters are unconstrained
reals mapped to physical ranges inside the processor.

GRAFX 0.6 renders only nodes with an inlet, so the synths are one-inlet
nodes: connect a graph ``"in"`` node to them and feed zeros (their
``input_mode="add"`` sums the input into the output; ``"ignore"`` drops it).

The effects (:class:`Tremolo`, :class:`Phaser`, :class:`ModulatedDelay`,
:class:`OnePoleLowpass`, :class:`Biquad`, :class:`EnvelopeCompressor`) are
causal and share one state convention (:mod:`.stateful`), so a graph of
them can be rendered in chunks (:mod:`scrapl_graph.graph.chunked`).
"""
from ._common import ParamRange, RandomSource
from .chirplet import CHIRPLET_PRESETS, ChirpletSynth
from .drum import DRUM_PARAMETER_RANGES, DRUM_PRESETS, DrumSynth
from .dynamics import EnvelopeCompressor
from .granular import PAPER_MAX_CHIRP_RATE, GranularChirpSynth
from .iir import Biquad, OnePoleLowpass
from .lfo import LFO, LFO_SHAPES
from .modulation import ModulatedDelay, Tremolo
from .phaser import Phaser
from .stateful import StatefulEffect
from .time_shift import OnsetShift, TimeShift

__all__ = [
    "Biquad",
    "EnvelopeCompressor",
    "LFO",
    "LFO_SHAPES",
    "ModulatedDelay",
    "OnePoleLowpass",
    "Phaser",
    "StatefulEffect",
    "Tremolo",
    "CHIRPLET_PRESETS",
    "ChirpletSynth",
    "DRUM_PARAMETER_RANGES",
    "DRUM_PRESETS",
    "DrumSynth",
    "GranularChirpSynth",
    "PAPER_MAX_CHIRP_RATE",
    "ParamRange",
    "RandomSource",
    "OnsetShift",
    "TimeShift",
]
