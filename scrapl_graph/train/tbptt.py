r"""Truncated backpropagation through time (TBPTT) for a graph of stateful effects.

Following SPTMod's scheme for neural audio effects, a long input ``x`` and
its processed target ``y`` are cut, with a sliding window of hop ``H``, into
sequences of ``N`` consecutive sub-sequences of ``L`` samples each. Every
epoch the sequences are shuffled and, ``batch_size`` at a time, processed as
follows:

1. the effects' states are reset and the first sub-sequence is rendered
   without gradient: it only warms the states up (LFO phases, filter memory,
   delay lines), as a model's state would be after seeing the past;
2. each of the other ``N - 1`` sub-sequences is rendered from the carried
   states, the loss against the target sub-sequence is taken, and one
   optimizer step follows (one step per sub-sequence);
3. the states are detached after every sub-sequence: their values carry on,
   their gradients stop, so memory is bounded by ``L``, not by the signal.

Any loss of the registry works (``loss(estimate, target)`` on ``(B, C, L)``),
prepared by :func:`~scrapl_graph.train.run.prepare_run`: SCRAPL draws one
JTFS path per call, hence one per sub-sequence, with its per-path P-Adam /
P-SAGA state kept across the run by its own optimizer.

What is optimized is the flat parameter vector theta of the graph
(:class:`~scrapl_graph.graph.GraphSynth`), one row shared by every sequence
of a batch. Gradients cannot flow into the LFO phase offset past the warm-up
sub-sequence (the phase is a detached state there); rates and depths are
learnt from the within-sub-sequence dynamics.

Nuisance parameters, such as an LFO's phase offset, whose value in the target
is unknown and of no interest, can be drawn afresh for every sequence
(``nuisance``): each sequence of a batch then starts its LFO at its own random
phase. With a loss that compares batch statistics (``compare="batch_mean"``
of the JTFS losses, with time-invariant coefficients), the estimate's
statistics are then marginal in the phase, as the target's are over its
excerpts, and the TBPTT gradient (which ignores the phase carried from the
warm-up) is the gradient of that marginal comparison.

Such gradients are noisy (a few sequences per step, one JTFS path), and the
last iterate wanders around the optimum. ``average_tail`` returns instead
the mean of the iterates over the last part of the run (Polyak-Ruppert tail
averaging, in the unconstrained theta), whose spread shrinks with the
number of steps averaged.
"""
from __future__ import annotations

import logging
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..graph import ChunkedRenderer, GraphSynth
from ..graph.columns import ColumnSpec, resolve_columns, theta_labels
from .metrics import normalized_param_error
from .run import LossSpec, OptimizerSpec, as_loss, check_positive, prepare_run, progress_bar

log = logging.getLogger(__name__)

__all__ = ["TBPTTResult", "sliding_windows", "tbptt_optimize"]


def sliding_windows(length: int, window: int, hop: int) -> List[int]:
    """Starts of the windows of ``window`` samples, ``hop`` apart, that fit in ``length``.

    Raises:
        ValueError: if the window does not fit once, or ``hop < 1``.
    """
    if hop < 1:
        raise ValueError(f"hop must be >= 1, got {hop}")
    if window > length:
        raise ValueError(f"a sequence of {window} samples does not fit in a signal of {length}")
    return list(range(0, length - window + 1, hop))


@dataclass
class TBPTTResult:
    """What :func:`tbptt_optimize` returns.

    Attributes:
        theta: final parameters ``(1, n_theta)`` (detached): the last iterate, or the tail average.
        history: per step: ``"step"``, ``"epoch"``, ``"loss"``, ``"time"`` (s),
            and ``"param_error"`` with ``true_theta``.
        steps: optimizer steps taken (one per lossed sub-sequence).
        sequences: sequences per epoch; elapsed_s: wall time; loss_name: the loss's class.
    """

    theta: Tensor
    history: Dict[str, List[float]] = field(default_factory=dict)
    steps: int = 0
    sequences: int = 0
    elapsed_s: float = 0.0
    loss_name: str = ""

    @property
    def final_loss(self) -> float:
        return self.history["loss"][-1] if self.history.get("loss") else math.nan


def _check_signals(synth: GraphSynth, inputs: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
    """Inputs as ``(R, n_in, C, T)``, target as ``(R, C, T)``."""
    if not (torch.is_tensor(inputs) and torch.is_tensor(target)):
        raise TypeError("inputs and target must be tensors")
    if inputs.ndim == 3 and synth.num_inputs == 1:
        inputs = inputs[:, None]
    if inputs.ndim != 4 or target.ndim != 3 or inputs.shape[0] != target.shape[0] \
            or inputs.shape[-1] != target.shape[-1] or target.shape[1] != synth.num_channels:
        raise ValueError(f"inputs (R, [n_in,] C, T) and target (R, C, T) do not match: {tuple(inputs.shape)} vs "
                         f"{tuple(target.shape)}")
    return inputs, target


def tbptt_optimize(synth: GraphSynth, inputs: Tensor, target: Tensor, loss: LossSpec,
                   theta_init: Optional[Tensor] = None, *, sub_length: int, num_sub: int, hop: Optional[int] = None,
                   batch_size: int = 1, epochs: int = 1, max_steps: Optional[int] = None, lr: float = 0.05,
                   lr_end: Optional[float] = None, optimizer: OptimizerSpec = None, trainable: ColumnSpec = None,
                   error_columns: ColumnSpec = None, true_theta: Optional[Tensor] = None,
                   nuisance: ColumnSpec = None, average_tail: float = 0.0, seed: Optional[int] = 0,
                   progress: bool = False) -> TBPTTResult:
    """Fit a graph's parameters to long recordings with TBPTT (see the module docstring).

    Args:
        synth: a graph of causal effects (see :class:`~scrapl_graph.graph.ChunkedRenderer`).
        inputs: the dry recordings ``(R, n_in, C, T)`` (or ``(R, C, T)``).
        target: the processed recordings ``(R, C, T)``.
        loss: a registry name, a config or a loss module.
        theta_init: ``(1, n_theta)`` starting parameters (default zeros).
        sub_length: ``L``, samples per sub-sequence; a multiple of the graph's
            chunk alignment.
        num_sub: ``N``, sub-sequences per sequence, the first for warm-up (>= 2).
        hop: sliding-window hop between sequences (default ``(N - 1) L``: the
            lossed parts of consecutive sequences tile the signal).
        batch_size: sequences rendered together (theta is shared).
        epochs: passes over the shuffled sequences.
        max_steps: stop after this many optimizer steps.
        lr, lr_end, optimizer: as for :func:`~scrapl_graph.train.optimize_graph` (``lr_end``: the
            learning rate decays linearly to it over the run's steps).
        trainable, error_columns: theta columns optimized / measured (default all / trainable).
        true_theta: ``(1, n_theta)``, to record the parameter error after every step.
        nuisance: theta columns drawn for every sequence, uniformly in ``s = sigmoid(theta)`` (uniform
            over a linear parameter range, log-uniform over a log range), not trained.
        average_tail: return the mean of the trained columns' iterates over this fraction of the
            last steps (in [0, 1); 0: the last iterate).
        seed: seeds the shuffling and the loss's draws.
        progress: show a progress bar.

    Returns:
        :class:`TBPTTResult`.

    Raises:
        TypeError / ValueError: for mismatched shapes or invalid sizes.
        FloatingPointError: if the loss becomes NaN or infinite.
    """
    inputs, target = _check_signals(synth, inputs, target)
    for value, name in ((sub_length, "sub_length"), (batch_size, "batch_size"), (epochs, "epochs")):
        check_positive(value, name, numbers.Integral)
    if isinstance(average_tail, bool) or not isinstance(average_tail, numbers.Real) or not 0 <= average_tail < 1:
        raise ValueError(f"average_tail must be a fraction in [0, 1), got {average_tail!r}")
    if isinstance(num_sub, bool) or not isinstance(num_sub, int) or num_sub < 2:
        raise ValueError(f"num_sub must be an int >= 2 (one warm-up sub-sequence and one lossed), got {num_sub!r}")
    renderer = ChunkedRenderer(synth)
    if sub_length % renderer.alignment:
        raise ValueError(f"sub_length must be a multiple of {renderer.alignment}, got {sub_length}")
    hop = (num_sub - 1) * sub_length if hop is None else hop
    starts = sliding_windows(inputs.shape[-1], num_sub * sub_length, hop)
    sequences = [(r, s) for r in range(inputs.shape[0]) for s in starts]
    theta_init = (torch.zeros(1, synth.n_theta, dtype=target.dtype) if theta_init is None
                  else theta_init.detach()).to(target.device)
    if theta_init.shape != (1, synth.n_theta):
        raise ValueError(f"theta_init must have shape (1, {synth.n_theta}), got {tuple(theta_init.shape)}")
    labels = theta_labels(synth)
    columns = resolve_columns(trainable, synth.n_theta, labels)
    measured = columns if error_columns is None else resolve_columns(error_columns, synth.n_theta, labels)
    drawn = [] if nuisance is None else resolve_columns(nuisance, synth.n_theta, labels)
    if set(drawn) & set(columns):
        raise ValueError(f"columns {sorted(set(drawn) & set(columns))} are both trainable and nuisance")
    free = theta_init[:, columns].clone().requires_grad_(True)
    index = torch.tensor(columns, device=target.device)
    drawn_index = torch.tensor(drawn, dtype=torch.long, device=target.device)
    shuffle = torch.Generator().manual_seed(0 if seed is None else seed)
    nuisance_draws = torch.Generator().manual_seed(1 if seed is None else seed + 1)

    def full_theta(batch: int, draws: Optional[Tensor] = None) -> Tensor:
        theta = theta_init.index_copy(1, index, free).expand(batch, -1)
        return theta if draws is None else theta.index_copy(1, drawn_index, draws)

    def draw_nuisance(batch: int) -> Optional[Tensor]:
        if not drawn:
            return None
        s = torch.rand(batch, len(drawn), generator=nuisance_draws, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
        return torch.logit(s).to(theta_init)

    steps_per_epoch = -(-len(sequences) // batch_size) * (num_sub - 1)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    history: Dict[str, List[float]] = {"step": [], "epoch": [], "loss": [], "time": []}
    if true_theta is not None:
        history["param_error"] = []
    start_time, step = time.perf_counter(), 0
    first_averaged = total - int(average_tail * total) + 1  # the last iterate alone when the tail is empty
    tail_sum, tail_count = torch.zeros_like(free.detach()), 0
    bar = progress_bar(total, "tbptt", progress)
    with prepare_run(loss, [free], optimizer=optimizer, lr=lr, weight_decay=0.0, lr_end=lr_end, steps=total,
                     device=target.device, seed=seed) as run:
        log.info("tbptt: %s, %d sequences of %d x %d samples, %d steps", run.name, len(sequences), num_sub,
                 sub_length, total)
        for epoch in range(epochs):
            order = torch.randperm(len(sequences), generator=shuffle).tolist()
            for b in range(0, len(order), batch_size):
                if step >= total:
                    break
                batch = [sequences[i] for i in order[b:b + batch_size]]
                draws = draw_nuisance(len(batch))
                renderer.reset_states()
                for j in range(num_sub):
                    if step >= total:
                        break
                    x = torch.stack([inputs[r, ..., s + j * sub_length:s + (j + 1) * sub_length] for r, s in batch])
                    if j == 0:
                        with torch.no_grad():  # warm-up: states only
                            renderer.render_chunk(full_theta(len(batch), draws), x)
                        continue
                    y = torch.stack([target[r, ..., s + j * sub_length:s + (j + 1) * sub_length] for r, s in batch])
                    step += 1
                    value = run.step(lambda: run.loss(renderer.render_chunk(full_theta(len(batch), draws), x), y), step)
                    renderer.detach_states()
                    if step >= first_averaged:
                        tail_sum += free.detach()
                        tail_count += 1
                    history["step"].append(step)
                    history["epoch"].append(epoch)
                    history["loss"].append(value)
                    history["time"].append(time.perf_counter() - start_time)
                    if true_theta is not None:
                        theta_now = full_theta(1).detach()
                        history["param_error"].append(normalized_param_error(theta_now, true_theta, measured).item())
                    bar.update(1)
        renderer.reset_states()
    bar.close()
    final = tail_sum / tail_count if tail_count else free.detach()
    return TBPTTResult(theta=theta_init.index_copy(1, index, final), history=history, steps=step, sequences=len(sequences),
                       elapsed_s=time.perf_counter() - start_time, loss_name=run.name)


def tbptt_memory_pass(synth: GraphSynth, inputs: Tensor, target: Tensor, loss: LossSpec, *, sub_length: int,
                      num_sub: int, theta: Optional[Tensor] = None) -> int:
    """One full TBPTT pass over a signal (every sub-sequence, forward and backward); returns the sub-sequences run.

    The pass of :func:`tbptt_optimize` with a single sequence covering the
    signal and no parameter update, for memory measurements
    (:mod:`scrapl_graph.train.memory`).
    """
    inputs, target = _check_signals(synth, inputs, target)
    renderer = ChunkedRenderer(synth)
    loss_fn = as_loss(loss)
    theta = torch.zeros(1, synth.n_theta, requires_grad=True) if theta is None else theta
    renderer.reset_states()
    count = 0
    for j, start in enumerate(range(0, inputs.shape[-1] - sub_length + 1, sub_length)):
        x = inputs[..., start:start + sub_length]
        if j % num_sub == 0:
            renderer.reset_states()
            with torch.no_grad():
                renderer.render_chunk(theta, x)
            continue
        value = loss_fn(renderer.render_chunk(theta, x), target[..., start:start + sub_length])
        value.backward()
        renderer.detach_states()
        count += 1
    renderer.reset_states()
    return count

