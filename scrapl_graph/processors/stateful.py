"""The state convention shared by the causal effects: stateless by default, streaming on request.

A GRAFX processor is a function of its input signals and parameters. Effects
with memory (an LFO's phase, a filter's past samples, a delay line's recent
input) are still that when rendered in one call: each call starts from the
initial state. To render a long signal in consecutive chunks, or to train
with truncated backpropagation through time, the state at the end of one
call must be the state at the start of the next. Every effect here follows
one convention for that:

- ``streaming`` (bool, default False): when False, every call starts from the
  initial state and nothing is kept. When True, the state a call ends in is
  kept and the next render's matching call starts from it.
- :meth:`~StatefulEffect.reset_states`: forget the kept states (the next
  call starts from the initial state, as in a fresh render).
- :meth:`~StatefulEffect.detach_states`: cut the kept states from the autograd
  graph (truncated backpropagation: values carry over, gradients do not).
- :meth:`~StatefulEffect.begin_render`: called once before each chunk.

GRAFX calls a processor once per rendering stage with the nodes of that type
in that stage, in an order fixed by the rendering plan; the k-th call of a
render therefore always sees the same nodes in the same order, and the
effect keeps one state "slot" per call position. A slot whose node count no
longer matches raises, since the plan it belonged to changed.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..checks import check_finite
from ._common import ParamRange, check_positive_float, check_scalar_params

State = Dict[str, Tensor]


class StatefulEffect(nn.Module):
    """Base of the causal effects: scalar parameters mapped to ranges, and state slots.

    Subclasses fill ``self.ranges`` (parameter name -> :class:`ParamRange`, in
    parameter order) and implement ``forward(input_signals, **params)``, using
    :meth:`_check` for the inputs and :meth:`_read_state` / :meth:`_write_state`
    for their memory.

    Attributes:
        causal (bool): True: the output at sample n depends on inputs up to n
            only, so chunked rendering reproduces the one-call output.
        block_size (int): chunks must start on a multiple of it (1 when the
            effect has no block-rate control signal).

    Args:
        sample_rate (float): in Hz.
    """

    causal = True

    def __init__(self, sample_rate: float):
        super().__init__()
        self.sample_rate = check_positive_float(sample_rate, "sample_rate")
        self.ranges: Dict[str, ParamRange] = {}
        self.block_size = 1
        self.streaming = False
        self._slots: List[Tuple[int, State]] = []  # (node count, state) per call position
        self._call = 0

    # ------------------------------------------------------------ parameters
    def parameter_size(self) -> Dict[str, tuple]:
        """Shapes of the parameters, without the node axis: one scalar each."""
        return {name: (1,) for name in self.ranges}

    def physical(self, **params: Tensor) -> Dict[str, Tensor]:
        """Map unconstrained parameters (any subset, by name) to physical values.

        Raises:
            TypeError: for an unknown name.
        """
        unknown = set(params) - set(self.ranges)
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)}; expected {list(self.ranges)}")
        return {name: self.ranges[name].to_physical(z) for name, z in params.items()}

    def unconstrained(self, **values) -> Dict[str, Tensor]:
        """Inverse of :meth:`physical`: ``(nodes, 1)`` tensors that give these physical values.

        Raises:
            TypeError: for unknown names. ValueError: for out-of-range values.
        """
        unknown = set(values) - set(self.ranges)
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)}; expected {list(self.ranges)}")
        dtype = torch.get_default_dtype()
        return {name: self.ranges[name].to_unconstrained(torch.as_tensor(v, dtype=dtype)).reshape(-1, 1)
                for name, v in values.items()}

    def _check(self, input_signals: Tensor, params: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Validate a call: the input ``(nodes, channels, samples)`` and physical parameters ``(nodes, 1)``.

        Raises:
            TypeError: for a non-float input or parameter, or unknown/missing names.
            ValueError: for mis-shaped or non-finite inputs.
        """
        if not torch.is_tensor(input_signals) or not input_signals.is_floating_point():
            raise TypeError("input_signals must be a floating-point torch.Tensor")
        if input_signals.ndim != 3 or 0 in input_signals.shape:
            raise ValueError(f"input_signals must have shape (nodes, channels, samples), got "
                             f"{tuple(input_signals.shape)}")
        check_finite(input_signals, "input_signals")
        missing = set(self.ranges) - set(params)
        if missing:
            raise TypeError(f"missing parameter(s) {sorted(missing)}")
        flat, _ = check_scalar_params(params, input_signals.shape[0])
        # (nodes, 1, 1) broadcasts against (nodes, channels, samples).
        return input_signals, {k: v[:, None, None] for k, v in self.physical(**flat).items()}

    # ----------------------------------------------------------------- state
    def reset_states(self) -> None:
        """Forget every kept state: the next call starts from the initial state."""
        self._slots, self._call = [], 0

    def detach_states(self) -> None:
        """Cut the kept states from the autograd graph; their values stay."""
        self._slots = [(nodes, {k: v.detach() for k, v in state.items()}) for nodes, state in self._slots]

    def begin_render(self) -> None:
        """Mark the start of a render: the next call reads the first slot."""
        self._call = 0

    def _read_state(self, nodes: int) -> Optional[State]:
        """The state this call starts from, or None for the initial state.

        Raises:
            RuntimeError: if the kept state belongs to a different set of nodes.
        """
        if not self.streaming or self._call >= len(self._slots):
            return None
        kept, state = self._slots[self._call]
        if kept != nodes:
            raise RuntimeError(f"{type(self).__name__}: kept state has {kept} nodes, the call has "
                               f"{nodes}; call reset_states() after changing the graph or batch size")
        return state

    def _write_state(self, nodes: int, state: State) -> None:
        """Keep the state a call on ``nodes`` nodes ends in (streaming mode only); move to the next slot."""
        if not self.streaming:
            return
        if self._call < len(self._slots):
            self._slots[self._call] = (nodes, state)
        else:
            self._slots.append((nodes, state))
        self._call += 1
