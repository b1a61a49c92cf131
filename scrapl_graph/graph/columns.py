"""Selecting theta columns by index, boolean mask or layout label."""
from __future__ import annotations

import numbers
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

ColumnSpec = Union[None, Sequence[int], Sequence[str], Tensor, str]

__all__ = ["ColumnSpec", "resolve_columns", "theta_labels"]


def _label_matches(label: str, key: str) -> bool:
    """A column label ``type[node].name[index]`` matches its full text, its type, or its parameter name."""
    if label == key:
        return True
    node_part, _, rest = label.partition(".")
    node_type = node_part.split("[", 1)[0]
    name = rest.rsplit("[", 1)[0]
    return key in (node_type, name, f"{node_part}.{name}")


def theta_labels(synth: object) -> Optional[List[str]]:
    """The column labels of ``synth``'s theta layout (a GraphSynth's), or None for a synth without one."""
    layout = getattr(synth, "layout", None)
    return layout.labels() if layout is not None and hasattr(layout, "labels") else None


def resolve_columns(spec: ColumnSpec, n_theta: int, labels: Optional[Sequence[str]] = None) -> List[int]:
    """Turn a column selection into sorted column indices of theta.

    Args:
        spec: None (all columns); a boolean tensor of length ``n_theta``; a
            sequence (or tensor) of integer indices; or a string / sequence of
            strings matched against the synth's column labels
            (``ThetaLayout.labels()``, e.g. ``"chirplet[0].theta_am[0]"``): a
            string selects the columns whose full label, node type
            (``"chirplet"``), parameter name (``"theta_am"``) or node and
            parameter (``"chirplet[0].theta_am"``) equals it.
        n_theta: number of columns of theta.
        labels: the column labels (needed for strings).

    Returns:
        Sorted, distinct column indices (at least one).

    Raises:
        TypeError: for an unsupported selection type.
        ValueError: for out-of-range indices, unknown names, a wrong mask
            length, or an empty selection.
    """
    if spec is None:
        return list(range(n_theta))
    if isinstance(spec, str):
        spec = [spec]
    if torch.is_tensor(spec):
        if spec.dtype == torch.bool:
            if spec.shape != (n_theta,):
                raise ValueError(f"a boolean column mask must have shape ({n_theta},), got {tuple(spec.shape)}")
            columns = torch.nonzero(spec).flatten().tolist()
        elif not spec.is_floating_point() and not spec.is_complex():
            columns = spec.flatten().tolist()
        else:
            raise TypeError(f"a column tensor must be boolean or integer, got {spec.dtype}")
    elif isinstance(spec, Sequence):
        items = list(spec)
        if items and all(isinstance(s, str) for s in items):
            if labels is None:
                raise ValueError("column names need a synth with a layout (a GraphSynth); pass indices instead")
            columns = []
            for key in items:
                hits = [i for i, label in enumerate(labels) if _label_matches(label, key)]
                if not hits:
                    raise ValueError(f"no theta column matches {key!r}; columns are e.g. {list(labels)[:4]}")
                columns.extend(hits)
        elif all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in items):
            columns = [int(s) for s in items]
        else:
            raise TypeError(f"columns must be all integers or all strings, got {items!r}")
    else:
        raise TypeError(f"columns must be None, indices, names or a boolean mask, got {type(spec).__name__}")
    bad = [c for c in columns if not 0 <= c < n_theta]
    if bad:
        raise ValueError(f"column indices {bad} out of range for n_theta={n_theta}")
    columns = sorted(set(columns))
    if not columns:
        raise ValueError("the column selection is empty")
    return columns
