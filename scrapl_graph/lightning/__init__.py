"""The training layer on PyTorch Lightning (extra ``train``: ``pip install 'scrapl-graph[train]'``).

- :class:`SoundMatching`: audio -> encoder -> theta -> synth -> audio with any loss;
- :class:`ThetaISWarmup`: theta-IS path probabilities at fit start;
- :mod:`.cli`: ``scrapl-graph fit|validate|test --config FILE``.

``import scrapl_graph`` never imports this package.
"""
from .callbacks import ThetaISWarmup
from .module import SoundMatching

__all__ = ["SoundMatching", "ThetaISWarmup"]
