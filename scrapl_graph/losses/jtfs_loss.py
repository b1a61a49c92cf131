"""Full-tree JTFS loss: the mean over all paths of the per-path distance."""
from __future__ import annotations

import itertools
import logging
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..checks import check_pair
from ..jtfs import JTFS
from .distance import check_compare, compared, path_distance
from .transforms import TransformCache

log = logging.getLogger(__name__)


class JTFSLoss(nn.Module):
    """Joint time-frequency scattering distance over the whole path set.

    ``L(x, y) = mean_b mean_p || rho(S_p y_b) - rho(S_p x_b) ||_p``

    With uniform path sampling, SCRAPL's single-path loss has this loss as
    its expectation, and its gradient as the expected gradient.

    Memory stays bounded: the first-order scalogram is shared, and the paths
    are evaluated in chunks whose gradients (with respect to the scalogram)
    are taken one chunk at a time during the forward pass; ``backward`` then
    only runs through the first order. Second derivatives of this loss are
    not available.

    Args:
        shape: signal length N.
        J, Q1, Q2, J_fr, Q_fr, T, F: the JTFS (see :class:`scrapl_graph.JTFS`).
        p: order of the per-path norm.
        use_rho_log1p: compare ``log1p(S / log1p_eps)`` instead of S.
        log1p_eps: the epsilon of the log compression.
        first_order: add the first-order JTFS paths to the path set.
        chunk_elements: complex elements of the largest intermediate of one
            chunk; smaller means less memory and more, smaller batches.
        check_values: the NaN/Inf check of inputs (None: on CPU only; see
            :mod:`scrapl_graph.checks`).
        compare: ``"example"`` (each estimate against its target) or ``"batch_mean"`` (the
            batch's mean coefficients against the targets' mean: see :mod:`.distance`).
        learnable: wavelet families with trainable centre frequencies and
            bandwidths (see :class:`~scrapl_graph.JTFS`); their gradient
            includes the target's side, and the loss holds one transform.

    Dtype and device: see :mod:`scrapl_graph.losses.transforms` (built in the
    default dtype, follows the input's floating dtype, computes on its own
    device).
    """

    def __init__(self, shape: int, J: int = 12, Q1: int = 8, Q2: int = 2, J_fr: int = 3, Q_fr: int = 2,
                 T=None, F=None, p: float = 2.0, use_rho_log1p: bool = False, log1p_eps: float = 1e-3,
                 first_order: bool = False, chunk_elements: int = 2**24, check_values: Optional[bool] = None,
                 learnable=(), compare: str = "example"):
        super().__init__()
        self.compare = check_compare(compare)
        config = dict(J=J, Q1=Q1, Q2=Q2, J_fr=J_fr, Q_fr=Q_fr, T=T, F=F, learnable=learnable)
        self.transforms = TransformCache(config, shape, check_values)
        self.shape = self.transforms.get(shape).N  # builds (and validates) the default-dtype transform
        self.p = float(p)
        self.log1p_eps = float(log1p_eps) if use_rho_log1p else None
        self.first_order = bool(first_order)
        self.chunk_elements = int(chunk_elements)

    @property
    def jtfs(self) -> JTFS:
        """The transform in the loss's dtype."""
        return self.transforms.get(self.shape)

    def path_chunks(self, batch: int, jtfs: Optional[JTFS] = None) -> List[List[int]]:
        """Path indices grouped by n2 and split so that each chunk stays under ``chunk_elements``."""
        jtfs = self.jtfs if jtfs is None else jtfs
        chunks: List[List[int]] = []
        n_fr_padded = jtfs.n_fr_padded
        for n2 in sorted({p.n2 for p in jtfs.paths}):
            members = [p.idx for p in jtfs.paths if p.n2 == n2]
            n_time = jtfs.n_padded // 2 ** jtfs.j2[n2]
            size = max(1, self.chunk_elements // (batch * n_fr_padded * n_time))
            chunks.extend(members[i : i + size] for i in range(0, len(members), size))
        return chunks

    def forward(self, x: Tensor, x_target: Tensor) -> Tensor:
        """Loss between estimate ``x`` and target ``x_target``, both (batch, channels, samples)."""
        batch, n = check_pair(x, x_target, self.transforms.device, check_values=self.transforms.check_values)
        jtfs = self.transforms.get(n, x.dtype)
        with jtfs.shared_filters():  # estimate and target read the same regenerated filters
            return self._loss(jtfs, x.reshape(batch, n), x_target.reshape(batch, n))

    def _loss(self, jtfs: JTFS, x: Tensor, x_target: Tensor) -> Tensor:
        batch = x.shape[0]
        filters = [p for p in jtfs.parameters() if p.requires_grad] if torch.is_grad_enabled() else []
        with torch.set_grad_enabled(bool(filters)):  # the target depends on learnable filters too
            target_spectra, _ = jtfs.scalogram_spectra(x_target)
        spectra, _ = jtfs.scalogram_spectra(x)
        meta = [(k1, start) for k1, start, _ in spectra]
        chunks = self.path_chunks(batch, jtfs)
        n_terms = sum(len(c) for c in chunks)
        # Chunks come grouped by n2: Y2 of the estimate and of the target is computed once per n2.
        groups = [(n2, list(group)) for n2, group in itertools.groupby(chunks, key=lambda c: jtfs.paths[c[0]].n2)]

        def time_scattering(n2: int, u1_hats: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
            y2 = jtfs.time_scattering([(k, s, u) for (k, s), u in zip(meta, u1_hats)], n2)
            with torch.set_grad_enabled(bool(filters)):
                return y2, jtfs.time_scattering(target_spectra, n2)

        def chunk_loss(idxs: Sequence[int], y2: Tensor, y2_target: Tensor) -> Tensor:
            S = jtfs.paths_from_time_scattering(y2, idxs)
            with torch.set_grad_enabled(bool(filters)):
                S_target = jtfs.paths_from_time_scattering(y2_target, idxs)
            S, S_target = compared(S, self.compare), compared(S_target, self.compare)
            return path_distance(S, S_target, self.p, self.log1p_eps).sum() / (S.shape[0] * n_terms)

        tensors = [s for _, _, s in spectra]
        if torch.is_grad_enabled() and (x.requires_grad or filters):
            loss = _EagerChunkedLoss.apply(time_scattering, chunk_loss, groups, len(tensors), *tensors, *filters)
        else:
            loss = 0.0
            for n2, group in groups:
                y2s = time_scattering(n2, tensors)
                loss = loss + sum(chunk_loss(idxs, *y2s) for idxs in group)
        if self.first_order:
            S1 = jtfs.first_order(x)
            with torch.set_grad_enabled(bool(filters)):
                S1_target = jtfs.first_order(x_target)
            S1, S1_target = compared(S1, self.compare), compared(S1_target, self.compare)
            first = path_distance(S1, S1_target, self.p, self.log1p_eps).mean(dim=0).sum()
            loss = (loss * n_terms + first) / (n_terms + S1.shape[1])
        return loss


class _EagerChunkedLoss(torch.autograd.Function):
    """Sum of chunk losses whose gradients are taken chunk by chunk during the forward pass.

    Chunks come in groups that share one second-order wavelet n2. For each group,
    Y2 of the estimate and of the target (``time_scattering``) is computed once;
    each chunk's graph from those Y2 is built, differentiated with respect to
    them and freed before the next one; the group's accumulated gradient then
    runs once through Y2 back to the shared first-order spectra. The peak
    memory is one chunk's graph and one Y2, and nothing is recomputed. The
    backward pass scales the accumulated gradients. Second derivatives are not
    available. Learnable filter parameters, passed after the ``n_spectra``
    spectra, are leaves that every chunk reads: their gradients accumulate the
    same way.
    """

    @staticmethod
    def forward(ctx, time_scattering, chunk_loss, groups, n_spectra, *tensors):
        spectra = [t.detach().requires_grad_() for t in tensors[:n_spectra]]
        filters = list(tensors[n_spectra:])
        inputs = spectra + filters
        grads = [torch.zeros_like(t) for t in inputs]
        total = tensors[0].real.new_zeros(())
        # Filters' graphs shared by every chunk (the target's scalogram) must outlive one chunk.
        retain = bool(filters)
        with torch.enable_grad():
            for n2, chunks in groups:
                y2s = time_scattering(n2, spectra)  # the estimate's, and the target's
                leaves = [y.detach().requires_grad_(y.requires_grad) for y in y2s]
                tracked = [i for i, y in enumerate(y2s) if y.requires_grad]
                leaf_grads = [torch.zeros_like(leaves[i]) for i in tracked]
                for idxs in chunks:
                    value = chunk_loss(idxs, *leaves)
                    _accumulate(leaf_grads + grads[n_spectra:], value, [leaves[i] for i in tracked] + filters, retain)
                    total = total + value.detach()
                _accumulate(grads, [y2s[i] for i in tracked], inputs, retain, leaf_grads)
        ctx.save_for_backward(*grads)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        return (None, None, None, None) + tuple(g * grad_output for g in ctx.saved_tensors)


def _accumulate(into: List[Tensor], outputs, wrt: List[Tensor], retain: bool, grad_outputs=None) -> None:
    """Add the gradients of ``outputs`` with respect to ``wrt`` into ``into`` (unused inputs add nothing)."""
    found = torch.autograd.grad(outputs, wrt, grad_outputs, allow_unused=True, retain_graph=retain)
    for g, d in zip(into, found):
        if d is not None:
            g.add_(d)
