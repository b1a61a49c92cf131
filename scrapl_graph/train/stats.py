"""Confidence intervals for tables of results over seeds or targets."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

from scipy import stats


def confidence_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float]:
    """(mean, half-width of the ``level`` Student-t interval); half-width 0 for a single value.

    Raises:
        ValueError: for no values.
    """
    n = len(values)
    if n == 0:
        raise ValueError("a confidence interval needs at least one value")
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
