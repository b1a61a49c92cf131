"""Shared pieces of the processors: parameter ranges, input checks, randomness.

Every processor here follows GRAFX's protocol: parameters arrive as
unconstrained real tensors with the node axis first, and a
:class:`ParamRange` maps each of them to its physical range with a logistic
sigmoid, on a linear or a logarithmic scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..checks import check_finite

LN2 = math.log(2.0)
INPUT_MODES = ("add", "ignore")


@dataclass(frozen=True)
class ParamRange:
    r"""A closed interval ``[minimum, maximum]`` reached from an unconstrained real.

    With ``s = sigmoid(z)``, the physical value is

    - linear scale: ``x = min + s (max - min)``
    - log scale: ``x = min (max / min) ** s`` (geometric interpolation, so
      that equal steps of ``s`` are equal ratios, as for rates and frequencies)

    When ``minimum == maximum`` the value is that constant and ``z`` is ignored.

    Args:
        minimum (float): lower end of the range.
        maximum (float): upper end of the range.
        log (bool): interpolate on a log scale (needs ``minimum > 0``).

    Raises:
        ValueError: if an end is not finite, ``minimum > maximum``, or a log
            range does not lie strictly above zero.
    """

    minimum: float
    maximum: float
    log: bool = False

    def __post_init__(self):
        lo, hi = float(self.minimum), float(self.maximum)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"range ends must be finite, got [{lo}, {hi}]")
        if lo > hi:
            raise ValueError(f"range minimum {lo} exceeds its maximum {hi}")
        if self.log and lo <= 0:
            raise ValueError(f"a log-scale range must be positive, got [{lo}, {hi}]")

    @classmethod
    def coerce(cls, value, name: str, log: bool = False) -> "ParamRange":
        """Build a range from a ``ParamRange`` or a ``(min, max)`` pair.

        Raises:
            TypeError: if ``value`` is neither.
        """
        if isinstance(value, ParamRange):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(float(value[0]), float(value[1]), log=log)
        raise TypeError(f"{name} must be a (min, max) pair or a ParamRange, got {value!r}")

    def to_physical(self, z: Tensor) -> Tensor:
        """Map unconstrained values ``z`` to the range (differentiable)."""
        if self.minimum == self.maximum:
            return torch.full_like(z, self.minimum)
        s = torch.sigmoid(z)
        if self.log:
            lo, hi = math.log(self.minimum), math.log(self.maximum)
            # exp(log(max)) can round past max; keep the ends exact.
            return torch.exp(lo + s * (hi - lo)).clamp(self.minimum, self.maximum)
        return self.minimum + s * (self.maximum - self.minimum)

    def to_unconstrained(self, x: Union[Tensor, float], eps: float = 1e-4) -> Tensor:
        """Inverse of :meth:`to_physical`: the logit that yields the value ``x``.

        Values on the ends are pulled ``eps`` inside, since the sigmoid only
        reaches them at infinity.

        Raises:
            ValueError: if a value lies outside the range.
        """
        x = torch.as_tensor(x, dtype=torch.get_default_dtype()) if not torch.is_tensor(x) else x
        tol = 1e-6 * max(1.0, abs(self.minimum), abs(self.maximum))
        if bool(((x < self.minimum - tol) | (x > self.maximum + tol)).any()):
            raise ValueError(
                f"value(s) {x.flatten().tolist()[:4]} outside the range "
                f"[{self.minimum}, {self.maximum}]"
            )
        if self.minimum == self.maximum:
            return torch.zeros_like(x)
        if self.log:
            lo, hi = math.log(self.minimum), math.log(self.maximum)
            s = (torch.log(x) - lo) / (hi - lo)
        else:
            s = (x - self.minimum) / (self.maximum - self.minimum)
        s = s.clamp(eps, 1.0 - eps)
        return torch.log(s) - torch.log1p(-s)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_positive_float(value, name: str) -> float:
    """Return ``value`` as a float, or raise if it is not finite and ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def check_input_mode(mode: str) -> str:
    if mode not in INPUT_MODES:
        raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {mode!r}")
    return mode


def check_input_signals(input_signals: Optional[Tensor], num_samples: int) -> Optional[Tensor]:
    """Check a GRAFX input batch of shape ``(nodes, channels, num_samples)``.

    Raises:
        TypeError: if it is not a floating-point tensor.
        ValueError: if its shape is not ``(nodes, channels, num_samples)``.
    """
    if input_signals is None:
        return None
    if not torch.is_tensor(input_signals):
        raise TypeError(f"input_signals must be a torch.Tensor, got {type(input_signals).__name__}")
    if not input_signals.is_floating_point():
        raise TypeError(f"input_signals must be floating point, got {input_signals.dtype}")
    if input_signals.ndim != 3 or input_signals.shape[-1] != num_samples or 0 in input_signals.shape[:2]:
        raise ValueError(
            f"input_signals must have shape (nodes, channels, {num_samples}) with at least one node and "
            f"channel, got {tuple(input_signals.shape)}"
        )
    check_finite(input_signals, "input_signals")
    return input_signals


def check_scalar_params(params: Dict[str, Tensor], num_nodes: Optional[int]) -> Tuple[Dict[str, Tensor], int]:
    """Check per-node scalar parameters and flatten each to shape ``(nodes,)``.

    Each parameter has ``parameter_size() == (1,)``, so GRAFX hands it over
    with shape ``(nodes, 1)``; ``(nodes,)`` is accepted too.

    Args:
        params: parameter name -> tensor.
        num_nodes: expected node count (from the input signals), or ``None``
            to take it from the first parameter.

    Returns:
        The flattened parameters and the node count.

    Raises:
        TypeError: if a parameter is not a floating-point tensor.
        ValueError: if shapes disagree with each other or with ``num_nodes``.
    """
    out = {}
    for name, value in params.items():
        if not torch.is_tensor(value):
            raise TypeError(f"parameter {name!r} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"parameter {name!r} must be floating point, got {value.dtype}")
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        if value.ndim != 1 or value.shape[0] == 0:
            raise ValueError(f"parameter {name!r} must have shape (nodes, 1) with at least one node, "
                             f"got {tuple(value.shape)}")
        check_finite(value, f"parameter {name!r}", what="parameters")
        if num_nodes is None:
            num_nodes = value.shape[0]
        if value.shape[0] != num_nodes:
            raise ValueError(
                f"parameter {name!r} has {value.shape[0]} nodes, expected {num_nodes}"
            )
        out[name] = value
    return out, int(num_nodes)


def mix_with_input(synth: Tensor, input_signals: Optional[Tensor], mode: str) -> Tensor:
    """Turn mono synth audio ``(nodes, samples)`` into a GRAFX node output.

    The mono signal is copied to every channel of the input, so the synth fits
    mono and stereo graphs alike; in ``"add"`` mode the input is summed in.

    Returns:
        Tensor of shape ``(nodes, channels, samples)``; one channel when there
        is no input.
    """
    out = synth[:, None, :]
    if input_signals is None:
        return out
    out = out.expand(-1, input_signals.shape[1], -1)
    if mode == "add":
        out = out + input_signals
    return out


def exp_chirp_cycles(f0: Tensor, rate: Tensor, t: Tensor) -> Tensor:
    r"""Phase, in cycles, of an exponential chirp.

    The instantaneous frequency is ``f(t) = f0 * 2 ** (rate * t)`` (``rate`` in
    octaves per second), so with ``f(0) = f0`` and zero phase at ``t = 0``

    ``phi(t) = f0 (2^{rate t} - 1) / (rate ln 2) = f0 t E(rate t ln 2)``,
    ``E(x) = (e^x - 1) / x``.

    ``E`` is evaluated by a series near ``x = 0`` so that ``rate = 0`` (a
    pure tone) has finite values and gradients.
    """
    x = rate * t * LN2
    small = x.abs() < 1e-4
    x_safe = torch.where(small, torch.ones_like(x), x)
    e = torch.where(small, 1.0 + x / 2.0 + x * x / 6.0, torch.expm1(x_safe) / x_safe)
    return f0 * t * e


def sin_cycles(cycles: Tensor) -> Tensor:
    """``sin(2 pi cycles)``, reducing the phase to [0, 1) cycle first.

    Large phases make ``sin`` slow on CPU and lose float32 precision; the
    floor is piecewise constant, so the gradient is unchanged.
    """
    return torch.sin(2 * math.pi * (cycles - cycles.detach().floor()))


# Gaussian windows are floored at exp(-40) (-350 dB): far below audibility, and
# products of them stay above float32 denormals, which make arithmetic slow.
MIN_LOG_WINDOW = -40.0


class RandomSource:
    """Where a processor's random draws come from.

    Draws are made on the CPU (``torch.Generator`` is tied to a device) and
    moved to the output device; they are small except for drum noise.

    Args:
        seed (int, optional): seed of a private generator.
        generator (torch.Generator, optional): a CPU generator owned by the
            caller; mutually exclusive with ``seed``.
        deterministic (bool): reset the generator to its seed before every
            call, so that every call makes the same draw (for theta-importance
            sampling warmup, where the synth must be a fixed function of theta).

    Raises:
        ValueError: if both ``seed`` and ``generator`` are given, or the
            generator does not live on the CPU.
        TypeError: if ``seed`` is not an int or ``generator`` not a generator.
    """

    def __init__(self, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 deterministic: bool = False):
        if seed is not None and generator is not None:
            raise ValueError("give either seed or generator, not both")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
            if generator.device.type != "cpu":
                raise ValueError(f"generator must be a CPU generator, got device {generator.device}")
            self.generator = generator
            self.seed = generator.initial_seed()
        else:
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise TypeError(f"seed must be an int, got {type(seed).__name__}")
            self.generator = torch.Generator(device="cpu")
            if seed is None:
                self.seed = self.generator.seed()
            else:
                self.seed = int(seed)
                self.generator.manual_seed(self.seed)
        self.deterministic = bool(deterministic)

    def node_generators(self, num_nodes: int, seeds: Optional[Tensor] = None) -> List[torch.Generator]:
        """One generator per node, to draw that node's random values from.

        Args:
            num_nodes: number of nodes in the call.
            seeds: optional integer tensor ``(nodes,)``: node ``i`` then draws
                from a fresh generator seeded with ``seeds[i]``, independent of
                the processor's own generator (e.g. to give a target and its
                estimate the same draw).

        Raises:
            TypeError / ValueError: if ``seeds`` is not an integer tensor of
                shape ``(nodes,)``.
        """
        if seeds is not None:
            if not torch.is_tensor(seeds) or seeds.is_floating_point() or seeds.is_complex():
                raise TypeError("seed must be an integer tensor of shape (nodes,)")
            seeds = seeds.reshape(-1) if seeds.ndim == 2 and seeds.shape[1] == 1 else seeds
            if seeds.ndim != 1 or seeds.shape[0] != num_nodes:
                raise ValueError(f"seed must have shape ({num_nodes},), got {tuple(seeds.shape)}")
            return [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds.tolist()]
        if self.deterministic:
            self.generator.manual_seed(self.seed)
        # Nodes share the generator and draw one after the other: distinct
        # draws per node, reproducible for a given seed and call sequence.
        return [self.generator] * num_nodes

    def reset(self, seed: Optional[int] = None) -> None:
        """Reseed the generator (to ``seed``, or to its original seed)."""
        if seed is not None:
            self.seed = int(seed)
        self.generator.manual_seed(self.seed)


def uniform(gen: torch.Generator, shape: Sequence[int]) -> Tensor:
    """Uniform draws in ``[0, 1)`` from ``gen`` in float64 (CPU)."""
    return torch.rand(tuple(shape), generator=gen, dtype=torch.float64)


class RangedSynth(nn.Module):
    """Base of the synths: scalar parameters, each mapped to its :class:`ParamRange`.

    Subclasses fill ``self.ranges`` (name -> range, in parameter order) in
    their constructor; ``parameter_size``, ``physical`` and ``unconstrained``
    follow from it.

    Args:
        sample_rate (float): in Hz.
        num_samples (int): output length.
        input_mode (str): ``"add"`` the synth to its input signal or ``"ignore"`` it.
        seed, generator, deterministic: see :class:`RandomSource`.
    """

    def __init__(self, sample_rate: float, num_samples: int, input_mode: str = "add", seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, deterministic: bool = False):
        super().__init__()
        self.sample_rate = check_positive_float(sample_rate, "sample_rate")
        self.num_samples = check_positive_int(num_samples, "num_samples")
        self.input_mode = check_input_mode(input_mode)
        self.random = RandomSource(seed=seed, generator=generator, deterministic=deterministic)
        self.ranges: Dict[str, ParamRange] = {}

    def parameter_size(self) -> Dict[str, tuple]:
        """Shapes of the parameters, without the node axis: one scalar each."""
        return {name: (1,) for name in self.ranges}

    def _by_name(self, args: tuple, kwargs: dict) -> dict:
        if len(args) > len(self.ranges):
            raise TypeError(f"expected at most {len(self.ranges)} positional parameters {list(self.ranges)}")
        named = dict(zip(self.ranges, args))
        twice = set(named) & set(kwargs)
        if twice:
            raise TypeError(f"parameter(s) {sorted(twice)} given twice")
        named.update(kwargs)
        unknown = set(named) - set(self.ranges)
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)}; expected {list(self.ranges)}")
        return named

    def _checked_call(self, input_signals: Optional[Tensor], params: Dict[str, Tensor]):
        """Validate a forward call: ``(input_signals, nodes, physical parameters of shape (nodes,))``."""
        input_signals = check_input_signals(input_signals, self.num_samples)
        nodes = None if input_signals is None else input_signals.shape[0]
        params, nodes = check_scalar_params(params, nodes)
        return input_signals, nodes, self.physical(**params)

    def physical(self, *args: Tensor, **kwargs: Tensor) -> Dict[str, Tensor]:
        """Map unconstrained parameters (any subset, positional in parameter order or by name) to physical values."""
        return {name: self.ranges[name].to_physical(z) for name, z in self._by_name(args, kwargs).items()}

    def unconstrained(self, *args, **kwargs) -> Dict[str, Tensor]:
        """Inverse of :meth:`physical`: ``(nodes, 1)`` tensors giving these physical values.

        Raises:
            TypeError: for unknown names. ValueError: for out-of-range values.
        """
        dtype = torch.get_default_dtype()
        return {name: self.ranges[name].to_unconstrained(torch.as_tensor(v, dtype=dtype)).reshape(-1, 1)
                for name, v in self._by_name(args, kwargs).items()}
