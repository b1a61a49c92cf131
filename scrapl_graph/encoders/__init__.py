"""Encoders from audio to synth parameters for unsupervised sound matching.

- :class:`ConstantQTransform`: a log-compressed constant-Q front end in torch;
- :class:`SpectralCNNEncoder`: the paper's 2-D CNN from a time-frequency
  image to unconstrained theta, with the paper's two configurations;
- :class:`AudioEncoder`: the two together, audio ``(B, C, N)`` to ``(B, n_theta)``;
- :class:`ScatteringEncoder`: JTFS features (fixed or learnable filters) and an MLP.
"""
from .audio import AudioEncoder, paper_encoder_for
from .cnn import SpectralCNNEncoder, ThetaHeads, as_n_theta
from .cqt import ConstantQTransform, cqt_frequencies, paper_f_min
from .scattering import ScatteringEncoder

__all__ = ["AudioEncoder", "ConstantQTransform", "paper_encoder_for", "ScatteringEncoder", "SpectralCNNEncoder",
           "ThetaHeads", "as_n_theta",
           "cqt_frequencies", "paper_f_min"]
