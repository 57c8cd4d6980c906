"""Step-wise aggregation: one number per solution from a PRM's per-step scores (paper §5.2, Fig. 13).

The same `aggregate` call ranks beams inside search and scores the pool for every reported curve, so a
configured aggregation can never be silently replaced by another one.

    aggregate([0.9, 0.4, 0.8], "min")   # 0.4
"""
from __future__ import annotations

import numpy as np

from .checks import check

AGGREGATIONS = ("last", "min", "prod")  # the paper uses "last" (the PRM's value of the final step)


def check_aggregation(name) -> str:
    check(name in AGGREGATIONS, "aggregation", name, f"one of {AGGREGATIONS}")
    return name


def aggregate(step_scores, how: str) -> float:
    """`last`: the final step's score; `min`: the weakest step; `prod`: the product of all steps.

    A solution without steps (an empty completion) scores 0: it can never be preferred.
    """
    check_aggregation(how)
    s = np.asarray(step_scores, dtype=float)
    if s.size == 0:
        return 0.0
    if how == "last":
        return float(s[-1])
    if how == "min":
        return float(s.min())
    return float(np.prod(s))
