r"""The paths a SCRAPL loss samples: the second-order JTFS paths, then optionally the first-order ones.

Indices ``0 .. P2 - 1`` are the second-order paths (n2, n_fr), in the
reference package's order; with a first-order share, indices
``P2 .. P2 + P1 - 1`` are the first-order paths, the channels of
:meth:`scrapl_graph.JTFS.first_order` (the time-averaged scalogram filtered
across log-frequency). A request for several paths is split into blocks of
one order each: the two orders are computed by different code (and need not
have the same coefficient shape), so their distances are taken per block and
put back in the requested order. All blocks share one first-order scalogram.
"""
from __future__ import annotations

import weakref
from typing import List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from ..jtfs import JTFS
from ..scrapl.order_share import Share, impose_share, order_prior, resolve_share
from .distance import check_compare, compared, path_distance


class Block(NamedTuple):
    """Requested paths of one order: their ``positions`` in the request and their indices within the order."""

    order: int
    positions: List[int]
    local: List[int]


class ScraplPathSet:
    """The sampled path set of a SCRAPL loss, its metadata and its prior probabilities.

    Args:
        layout: any :class:`~scrapl_graph.JTFS` of the loss's configuration
            (the path set does not depend on the signal length).
        first_order_share: None (second-order paths only), a number in (0, 1)
            or ``"uniform"``: the first order's probability mass (see
            :mod:`scrapl_graph.scrapl.order_share`).
        compare: ``"example"`` or ``"batch_mean"`` (see :mod:`.distance`).

    Attributes:
        paths: :class:`~scrapl_graph.PathInfo` per path, in index order (``order`` tells 1 from 2).
        keys: ``(n2, n_fr)`` per path (``n2 = -1`` for the first order).
        n_paths, n_second, n_first: sizes of the set and of each order.
        share: the first order's mass (None without first-order paths).
        prior: float64 ``(n_paths,)``, the probabilities before theta-IS.
    """

    def __init__(self, layout: JTFS, first_order_share: Share = None, compare: str = "example"):
        self.compare = check_compare(compare)
        self.n_second = layout.n_paths
        self.share = resolve_share(first_order_share, layout.n_paths, layout.n_first_order)
        first = list(layout.first_order_paths) if self.share is not None else []
        self.paths = list(layout.paths) + first
        self.n_first, self.n_paths = len(first), len(self.paths)
        self.keys = [p.key for p in self.paths]
        self.prior = order_prior(self.n_second, self.n_first, self.share)

    def probs_from_importance(self, importance) -> Tensor:
        """Path probabilities from a :class:`~scrapl_graph.scrapl.ImportanceTable` (eq. 10).

        Without first-order paths: the table's probabilities. With them: the
        table's distribution over the union renormalized within each order,
        which keeps the share (:func:`~scrapl_graph.scrapl.order_share.impose_share`).
        """
        if self.share is None:
            return importance.probs()
        return impose_share(importance.mixture(), self.n_second, self.share, importance.min_prob_frac)

    def blocks(self, idxs: Sequence[int]) -> List[Block]:
        """``idxs`` split by order: the second-order block (if any), then the first-order block (if any)."""
        second = [(k, i) for k, i in enumerate(idxs) if i < self.n_second]
        first = [(k, i - self.n_second) for k, i in enumerate(idxs) if i >= self.n_second]
        return [Block(order, [k for k, _ in part], [i for _, i in part])
                for order, part in ((2, second), (1, first)) if part]

    def coefficients(self, jtfs: JTFS, x: Tensor, idxs: Sequence[int]) -> List[Tensor]:
        """Coefficients of paths ``idxs`` of signals ``x`` (batch, N): one ``(batch, len(block), F', T')`` per block.

        A request of second-order paths only is one :meth:`~scrapl_graph.JTFS.paths_coefficients`
        call, which computes only the lambda1 those paths need; the first order needs all of them.
        """
        blocks = self.blocks(idxs)
        if len(blocks) == 1 and blocks[0].order == 2:
            return [jtfs.paths_coefficients(x, blocks[0].local)]
        spectra, _ = jtfs.scalogram_spectra(x)
        return [jtfs.paths_from_spectra(spectra, b.local) if b.order == 2 else
                jtfs.first_order_from_spectra(spectra, b.local) for b in blocks]

    def coefficients_by_path(self, jtfs: JTFS, x: Tensor, idxs: Sequence[int]) -> List[Tensor]:
        """Coefficients of paths ``idxs``, one ``(batch, F', T')`` tensor per path, in the order of ``idxs``."""
        out: List[Optional[Tensor]] = [None] * len(idxs)
        for block, coefs in zip(self.blocks(idxs), self.coefficients(jtfs, x, idxs)):
            for k, coef in zip(block.positions, coefs.unbind(1)):
                out[k] = coef
        return out

    def distances(self, S: List[Tensor], S_target: List[Tensor], idxs: Sequence[int], p: float,
                  log1p_eps: Optional[float]) -> Tensor:
        """Per-path distances ``(batch, len(idxs))`` between the blocks of :meth:`coefficients`
        (``(1, len(idxs))`` between batch means with ``compare="batch_mean"``)."""
        blocks = self.blocks(idxs)
        parts = [path_distance(compared(s, self.compare), compared(t, self.compare), p, log1p_eps)
                 for s, t in zip(S, S_target)]
        if len(parts) == 1:  # one order: its positions are the request's, in order
            return parts[0]
        # Concatenated, the blocks hold positions [b.positions...]: argsort puts them back in request order.
        back = torch.tensor([k for b in blocks for k in b.positions], device=parts[0].device).argsort()
        return torch.cat(parts, dim=1)[:, back]


class TargetCache:
    """Path coefficients of a fixed target, reused while the same, unmodified target tensor comes back.

    The key is the tensor's identity (a weak reference) and its version
    counter, which every in-place change bumps, with the length, device and
    dtype; coefficients are kept per path, so any path drawn later joins them.

    Args:
        path_set: the loss's :class:`ScraplPathSet`.
    """

    def __init__(self, path_set: ScraplPathSet):
        self.path_set = path_set
        self.clear()

    def clear(self) -> None:
        self._ref, self._key, self._coefs = None, None, {}

    def coefficients(self, jtfs: JTFS, x_target: Tensor, flat: Tensor, idxs: Sequence[int],
                     enabled: bool = True) -> List[Tensor]:
        """The target's blocks for ``idxs`` (as :meth:`ScraplPathSet.coefficients`), without gradient
        to the target, but with gradient to the transform's trainable filters, if any (never cached then).

        Args:
            x_target: the target as passed to the loss (its identity is the cache key).
            flat: the same signals as (batch, N).
            enabled: False computes them afresh (and leaves the cache alone).
        """
        if torch.is_grad_enabled() and any(p.requires_grad for p in jtfs.parameters()):
            return self.path_set.coefficients(jtfs, flat.detach(), idxs)
        if not enabled or x_target.is_inference():  # inference tensors have no version counter
            with torch.no_grad():
                return self.path_set.coefficients(jtfs, flat, idxs)
        # Learnable filters moved by an optimizer step make cached coefficients stale.
        key = (x_target._version, jtfs.N, flat.device, flat.dtype, tuple(p._version for p in jtfs.parameters()))
        if self._ref is None or self._ref() is not x_target or self._key != key:
            self._ref, self._key, self._coefs = weakref.ref(x_target), key, {}
        missing = sorted({i for i in idxs if i not in self._coefs})
        if missing:
            with torch.no_grad():
                self._coefs.update(zip(missing, self.path_set.coefficients_by_path(jtfs, flat, missing)))
        return [torch.stack([self._coefs[idxs[k]] for k in b.positions], dim=1) for b in self.path_set.blocks(idxs)]
