"""Differentiable synths and effects that follow GRAFX's processor protocol.

Each processor is an ``nn.Module`` with ``forward(input_signals, **params)``
batched over nodes and ``parameter_size()``; parameters are unconstrained
reals mapped to physical ranges inside the processor.

GRAFX 0.6 renders only nodes with an inlet, so the synths are one-inlet
nodes: connect a graph ``"in"`` node to them and feed zeros (their
``input_mode="add"`` sums the input into the output; ``"ignore"`` drops it).
"""
from ._common import ParamRange, RandomSource
from .chirplet import CHIRPLET_PRESETS, ChirpletSynth
from .drum import DRUM_PARAMETER_RANGES, DRUM_PRESETS, DrumSynth
from .granular import PAPER_MAX_CHIRP_RATE, GranularChirpSynth
from .time_shift import OnsetShift, TimeShift

__all__ = [
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
