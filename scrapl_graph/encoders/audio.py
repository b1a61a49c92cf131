"""Audio to theta: the constant-Q front end followed by the spectral CNN.

``AudioEncoder(x)`` computes ``cnn(cqt(x))``: ``(B, C, N)`` audio to
``(B, n_theta)`` unconstrained synth parameters. The paper's two
configurations (appendix E) are :meth:`AudioEncoder.paper_granular_chirplet`
and :meth:`AudioEncoder.paper_tr808`; the front end has no trainable
parameters, so their counts are the CNN's (604,106 and 724,642).
"""
from __future__ import annotations

from torch import Tensor, nn

from .cnn import SpectralCNNEncoder
from .cqt import ConstantQTransform

__all__ = ["AudioEncoder"]


class AudioEncoder(nn.Module):
    """A :class:`ConstantQTransform` followed by a :class:`SpectralCNNEncoder`.

    Args:
        frontend: the time-frequency front end.
        cnn: the encoder; its ``in_shape`` must be the front end's ``out_shape``.

    Raises:
        ValueError: when the two shapes differ.
    """

    def __init__(self, frontend: ConstantQTransform, cnn: SpectralCNNEncoder):
        super().__init__()
        if tuple(cnn.in_shape) != tuple(frontend.out_shape):
            raise ValueError(f"the CNN expects images of shape {tuple(cnn.in_shape)} but the front end "
                             f"makes {tuple(frontend.out_shape)}; build the CNN with in_shape=frontend.out_shape")
        self.frontend, self.cnn = frontend, cnn

    @property
    def n_theta(self) -> int:
        return self.cnn.n_theta

    @classmethod
    def paper_granular_chirplet(cls, n_theta: object = 2, *, sample_rate: float = 8192,
                                n_samples: int = 32768, **cnn_overrides) -> "AudioEncoder":
        """The granular/chirplet encoder: 5-octave, 12-bin CQT at hop 256, log1p(U / 1e-3), paper CNN.

        Args:
            n_theta: output size (an int, a GraphSynth, a ThetaLayout).
            sample_rate: Hz (the paper: 8192).
            n_samples: signal length (the paper: 32768, a (60, 129) image;
                shorter signals give fewer frames, at least 32 for the five
                (2, 2) poolings, i.e. ``n_samples >= 7936``).
            **cnn_overrides: passed to :meth:`SpectralCNNEncoder.paper_granular_chirplet`.
        """
        frontend = ConstantQTransform(sample_rate, n_samples, n_octaves=5, bins_per_octave=12, hop_length=256)
        cnn = SpectralCNNEncoder.paper_granular_chirplet(n_theta, frontend.out_shape, **cnn_overrides)
        return cls(frontend, cnn)

    @classmethod
    def paper_tr808(cls, n_theta: object = 14, *, sample_rate: float = 44100,
                    n_samples: int = 44100, **cnn_overrides) -> "AudioEncoder":
        """The TR-808 encoder: 9-octave, 12-bin CQT at hop 256, log1p(U / 1e-3), paper CNN.

        Args:
            n_theta: output size (an int, a GraphSynth, a ThetaLayout).
            sample_rate: Hz (the paper: 44100).
            n_samples: signal length (the paper: 44100, a (108, 173) image;
                the poolings need at least 108 frames, ``n_samples >= 27392``).
            **cnn_overrides: passed to :meth:`SpectralCNNEncoder.paper_tr808`.
        """
        frontend = ConstantQTransform(sample_rate, n_samples, n_octaves=9, bins_per_octave=12, hop_length=256)
        cnn = SpectralCNNEncoder.paper_tr808(n_theta, frontend.out_shape, **cnn_overrides)
        return cls(frontend, cnn)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``(B, C, n_samples)`` audio. Returns: ``(B, n_theta)`` (see the two modules' errors)."""
        return self.cnn(self.frontend(x))


def synth_sample_rate(synth: nn.Module) -> float:
    """The sample rate of the first processor of ``synth`` that declares one.

    Raises:
        ValueError: if no processor declares a sample rate.
    """
    for module in synth.modules():
        rate = getattr(module, "sample_rate", None)
        if isinstance(rate, (int, float)) and rate > 0:
            return float(rate)
    raise ValueError(f"{type(synth).__name__} has no processor with a sample_rate: give the encoder explicitly")


def paper_encoder_for(synth: nn.Module) -> AudioEncoder:
    """The paper's encoder sized for ``synth`` (its ``n_theta``, ``num_samples`` and sample rate).

    The TR-808 layout (9 octaves, wider pooling) above 16 kHz, where the paper
    used it at 44.1 kHz; the granular/chirplet layout (5 octaves) below, where
    the paper used it at 8192 Hz.
    """
    rate, n = synth_sample_rate(synth), int(getattr(synth, "num_samples"))
    if rate > 16000:
        return AudioEncoder.paper_tr808(synth, sample_rate=rate, n_samples=n)
    return AudioEncoder.paper_granular_chirplet(synth, sample_rate=rate, n_samples=n)
