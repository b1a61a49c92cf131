r"""The SCRAPL paper's spectral 2-D CNN encoder: a constant-Q image to unconstrained synth parameters.

Layer order (the reference experiments' ``Spectral2DCNN``):

- ``n_blocks`` blocks, each ``LayerNorm`` over the block input's
  (frequency, time) plane without affine parameters (every example and
  channel standardized on its own), ``Conv2d`` (stride 1, "same" padding),
  ``MaxPool2d(pool)``, ``PReLU`` (one shared slope);
- the mean over frequency and time (so the dense sizes depend on the
  channels, not on the image size);
- an embedding ``Linear(channels[-1], E)``, ``PReLU``, ``Dropout``;
- one small head per synth parameter: ``Linear(E, E/2)``, ``PReLU``,
  ``Dropout``, ``Linear(E/2, 1)``.

The reference ends each head with a sigmoid to a [0, 1] parameter. Here the
synths map an unconstrained theta through a sigmoid themselves, so the heads
return the pre-sigmoid value (``output_sigmoid=True`` restores the
reference's output); synth(encoder(x)) computes the same function.

Parameter count, with ``c_i`` the channels, ``k`` the kernel's area and
``n`` parameters:

.. math:: \sum_i (c_{i-1} k + 1) c_i + n_\mathrm{blocks} + (c_\mathrm{last} + 1)E + 1
          + n\,\big((E + 1)E/2 + 1 + E/2 + 1\big),

604,106 for the granular/chirplet configuration and 724,642 for the TR-808
one (the paper's 604K and 724K).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..checks import check_finite, check_real_float

__all__ = ["SpectralCNNEncoder", "ThetaHeads", "as_n_theta"]


def as_n_theta(n_theta: object) -> int:
    """The number of synth parameters: an int, or anything with an ``n_theta`` (a GraphSynth, a ThetaLayout).

    Raises:
        TypeError: for a value that is neither an int nor has an int ``n_theta``.
        ValueError: for fewer than one parameter.
    """
    value = getattr(n_theta, "n_theta", n_theta)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"n_theta must be an int or have an int n_theta attribute (a GraphSynth or a "
                        f"ThetaLayout), got {type(n_theta).__name__}")
    if value < 1:
        raise ValueError(f"n_theta must be >= 1, got {value}")
    return int(value)


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _pair(value, name: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return _positive(pair[0], name), _positive(pair[1], name)


class ThetaHeads(nn.Module):
    """``n`` independent two-layer heads evaluated as one batched product.

    Head ``i`` computes ``w2_i . dropout(prelu_i(W1_i z + b1_i)) + b2_i``, the
    same function and the same initialization as ``n`` separate
    ``Linear(E, H), PReLU(), Dropout(p), Linear(H, 1)`` stacks, in three
    kernels instead of ``4 n``.

    Args:
        in_dim: embedding size ``E``.
        hidden_dim: hidden size ``H`` of each head.
        n_heads: number of heads (one per synth parameter).
        dropout: dropout probability after each head's activation.
    """

    def __init__(self, in_dim: int, hidden_dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.in_dim, self.hidden_dim, self.n_heads = in_dim, hidden_dim, n_heads
        self.w1 = nn.Parameter(torch.empty(n_heads, in_dim, hidden_dim))
        self.b1 = nn.Parameter(torch.empty(n_heads, hidden_dim))
        self.slope = nn.Parameter(torch.empty(n_heads))
        self.w2 = nn.Parameter(torch.empty(n_heads, hidden_dim))
        self.b2 = nn.Parameter(torch.empty(n_heads))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s default, uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``; PReLU slopes 0.25."""
        for tensor, fan_in in ((self.w1, self.in_dim), (self.b1, self.in_dim),
                               (self.w2, self.hidden_dim), (self.b2, self.hidden_dim)):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(tensor, -bound, bound)
        nn.init.constant_(self.slope, 0.25)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, hidden_dim={self.hidden_dim}, n_heads={self.n_heads}"

    def forward(self, z: Tensor) -> Tensor:
        """Args: z ``(B, E)``. Returns: ``(B, n_heads)``."""
        hidden = torch.einsum("be,neh->bnh", z, self.w1) + self.b1
        hidden = self.dropout(nn.functional.prelu(hidden, self.slope))  # slope i on head i (axis 1)
        return torch.einsum("bnh,nh->bn", hidden, self.w2) + self.b2


class SpectralCNNEncoder(nn.Module):
    """2-D CNN from a ``(B, C, n_bins, n_frames)`` time-frequency image to ``(B, n_theta)``.

    Defaults are the paper's granular/chirplet encoder (appendix E); see the
    module docstring for the layer order.

    Args:
        in_shape: ``(n_bins, n_frames)`` of the input image, e.g. a
            :class:`~scrapl_graph.encoders.ConstantQTransform`'s ``out_shape``.
            It fixes the normalization shapes and is checked at every call.
        n_theta: output size: an int, or a GraphSynth / ThetaLayout (anything
            with ``n_theta``).
        in_channels: channels of the input image.
        channels: output channels of each block; its length is the number of blocks.
        kernel_size: convolution kernel, an int or ``(freq, time)``.
        pool_sizes: max-pooling of each block, ``(freq, time)`` pairs (or
            ints); None pools ``(2, 2)`` in every block.
        embedding_dim: size ``E`` of the embedding.
        head_dim: hidden size of each parameter head; None uses ``E // 2``.
        dropout: dropout probability after the embedding and in each head.
        normalize: the per-block LayerNorm (no parameters).
        output_sigmoid: apply a sigmoid to the output (the reference's [0, 1]
            parameters); False returns unconstrained theta.
        check_values: the NaN/Inf check of the input (see :mod:`scrapl_graph.checks`).

    Attributes:
        block_shapes: ``(n_bins, n_frames)`` after each block.

    Raises:
        TypeError: for a bad ``n_theta`` (see :func:`as_n_theta`).
        ValueError: for non-positive sizes, a dropout outside [0, 1), a
            ``pool_sizes`` whose length differs from ``channels``, or pooling
            that shrinks the image to nothing.
    """

    def __init__(self, in_shape: Sequence[int], n_theta: object = 2, *, in_channels: int = 1,
                 channels: Sequence[int] = (128,) * 5, kernel_size=(3, 3),
                 pool_sizes: Optional[Sequence] = None, embedding_dim: int = 64,
                 head_dim: Optional[int] = None, dropout: float = 0.5, normalize: bool = True,
                 output_sigmoid: bool = False, check_values: Optional[bool] = None):
        super().__init__()
        self.in_shape = _pair(tuple(in_shape), "in_shape")
        self.n_theta = as_n_theta(n_theta)
        self.in_channels = _positive(in_channels, "in_channels")
        self.channels = tuple(_positive(c, "channels") for c in channels)
        if not self.channels:
            raise ValueError("channels must name at least one block")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        pools = [(2, 2)] * len(self.channels) if pool_sizes is None else list(pool_sizes)
        if len(pools) != len(self.channels):
            raise ValueError(f"pool_sizes has {len(pools)} entries for {len(self.channels)} blocks")
        self.pool_sizes = tuple(_pair(p, "pool_sizes entry") for p in pools)
        self.embedding_dim = _positive(embedding_dim, "embedding_dim")
        self.head_dim = _positive(self.embedding_dim // 2 if head_dim is None else head_dim,
                                  "head_dim (by default embedding_dim // 2)")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.dropout, self.normalize, self.output_sigmoid = float(dropout), bool(normalize), bool(output_sigmoid)
        self.check_values = check_values

        self.blocks = nn.Sequential(*self._build_blocks())
        self.embed = nn.Sequential(nn.Linear(self.channels[-1], self.embedding_dim), nn.PReLU(),
                                   nn.Dropout(self.dropout))
        self.heads = ThetaHeads(self.embedding_dim, self.head_dim, self.n_theta, self.dropout)

    def _build_blocks(self):
        shape, in_ch, self.block_shapes = self.in_shape, self.in_channels, []
        for i, (out_ch, pool) in enumerate(zip(self.channels, self.pool_sizes)):
            layers = [nn.LayerNorm(list(shape), elementwise_affine=False)] if self.normalize else []
            layers += [nn.Conv2d(in_ch, out_ch, self.kernel_size, padding="same"), nn.MaxPool2d(pool), nn.PReLU()]
            shape = (shape[0] // pool[0], shape[1] // pool[1])
            if min(shape) < 1:
                raise ValueError(f"block {i} pools {pool} and leaves a {shape} image from in_shape="
                                 f"{self.in_shape}; use a larger input or smaller pooling")
            self.block_shapes.append(shape)
            in_ch = out_ch
            yield nn.Sequential(*layers)

    # ----------------------------------------------------- the paper's encoders
    @classmethod
    def paper_granular_chirplet(cls, n_theta: object = 2, in_shape: Sequence[int] = (60, 129),
                                **overrides) -> "SpectralCNNEncoder":
        """The paper's encoder for the granular and chirplet tasks (appendix E): 604,106 parameters.

        Five blocks of 128 channels, 3x3 kernels, (2, 2) pooling; embedding
        64, dropout 0.5. ``in_shape`` defaults to the 5-octave, 12-bin CQT of
        32768 samples at hop 256: (60, 129).
        """
        config = dict(channels=(128,) * 5, kernel_size=(3, 3), pool_sizes=((2, 2),) * 5,
                      embedding_dim=64, dropout=0.5)
        return cls(in_shape, n_theta, **{**config, **overrides})

    @classmethod
    def paper_tr808(cls, n_theta: object = 14, in_shape: Sequence[int] = (108, 173),
                    **overrides) -> "SpectralCNNEncoder":
        """The paper's encoder for the TR-808 task (appendix E): 724,642 parameters.

        Five blocks of 128 channels, 3x3 kernels, pooling (2,2), (2,2), (2,3),
        (3,3), (3,3); embedding 128, dropout 0.25. ``in_shape`` defaults to
        the 9-octave, 12-bin CQT of 44100 samples at hop 256: (108, 173).
        """
        config = dict(channels=(128,) * 5, kernel_size=(3, 3),
                      pool_sizes=((2, 2), (2, 2), (2, 3), (3, 3), (3, 3)), embedding_dim=128, dropout=0.25)
        return cls(in_shape, n_theta, **{**config, **overrides})

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tensor:
        """Theta for a batch of time-frequency images.

        Args:
            x: ``(B, in_channels, *in_shape)`` real tensor in the parameters'
                dtype and on their device.

        Returns:
            ``(B, n_theta)``: unconstrained theta (in (0, 1) with
            ``output_sigmoid=True``).

        Raises:
            TypeError: for a non-tensor, an integer or complex dtype, or a
                dtype other than the parameters'.
            ValueError: for another shape, an empty batch, another device, or
                NaN/Inf values.
        """
        x = check_real_float(x, "x")
        expected = (self.in_channels, *self.in_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected or x.shape[0] == 0:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, expected))}) with B >= 1, "
                             f"got {tuple(x.shape)}")
        weight = self.embed[0].weight
        if x.dtype != weight.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the encoder's parameters are {weight.dtype}; "
                            f"convert one of them with .to()")
        if x.device != weight.device:
            raise ValueError(f"x is on {x.device} but the encoder is on {weight.device}; move it with .to(device)")
        check_finite(x, "x", self.check_values, what="values")
        features = self.blocks(x).mean(dim=(-2, -1))  # (B, channels[-1])
        theta = self.heads(self.embed(features))
        return torch.sigmoid(theta) if self.output_sigmoid else theta
