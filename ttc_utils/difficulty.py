"""Oracle difficulty bins: questions split into quantiles of the base policy's pass@1 (Snell et al., 2024).

Bin 1 holds the easiest questions (highest pass@1), bin `num_bins` the hardest, as in the paper. Bins are
quantiles, not fixed pass@1 ranges, so every bin holds (nearly) the same number of questions; ties in
pass@1 are broken by qid, so the split is deterministic.

    pass1 = samples.groupby("qid")["correct"].mean()   # Series indexed by qid
    bins = oracle_bins(pass1, num_bins=5)              # Series of 1..5, same index
    bin_table(pass1, bins)                             # bin, questions, pass1_min, pass1_max, pass1_mean
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .checks import fail


def _check_pass1(pass1) -> np.ndarray:
    if not isinstance(pass1, pd.Series):
        fail("pass1", type(pass1).__name__, "a pandas Series of pass@1 values indexed by qid")
    if len(pass1) == 0:
        fail("pass1", "<empty>", "at least one question")
    if pass1.index.has_duplicates:
        fail("pass1.index", pass1.index[pass1.index.duplicated()][0], "unique qids")
    values = pd.to_numeric(pass1, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if not np.isfinite(values).all():
        fail("pass1", pass1[~np.isfinite(values)].iloc[0], "finite numbers (no missing values)")
    return values


def oracle_bins(pass1: pd.Series, num_bins: int = 5) -> pd.Series:
    """Split questions into `num_bins` equal-size difficulty bins by pass@1; bin 1 is the easiest.

    Questions are sorted by pass@1 descending, ties by qid ascending (as strings), then cut into
    contiguous groups with numpy.array_split sizes: sizes differ by at most one, larger groups first.

    Args:
        pass1: per-question pass@1, indexed by (unique) qid.
        num_bins: number of bins, an int in [1, number of questions].

    Returns:
        Series of int bins in 1..num_bins with the same index (and order) as `pass1`, named "bin".
    """
    values = _check_pass1(pass1)
    n = len(values)
    if not (isinstance(num_bins, (int, np.integer)) and not isinstance(num_bins, (bool, np.bool_))
            and 1 <= num_bins <= n):
        fail("num_bins", num_bins, f"an int in [1, {n}] (the number of questions)")
    # np.lexsort sorts by its last key first: pass@1 descending, then qid ascending.
    order = np.lexsort((pass1.index.astype(str).to_numpy(), -values))
    bins = np.empty(n, dtype=np.int64)
    for b, group in enumerate(np.array_split(order, num_bins), start=1):
        bins[group] = b
    return pd.Series(bins, index=pass1.index, name="bin")


def bin_table(pass1: pd.Series, bins: pd.Series) -> pd.DataFrame:
    """Size and pass@1 range of each bin, for reporting.

    Args:
        pass1: per-question pass@1, indexed by qid.
        bins: per-question bin (e.g. from `oracle_bins`), indexed by the same qids.

    Returns:
        DataFrame with columns bin, questions, pass1_min, pass1_max, pass1_mean; one row per bin, sorted.
    """
    values = _check_pass1(pass1)
    if not isinstance(bins, pd.Series) or not bins.index.sort_values().equals(pass1.index.sort_values()):
        fail("bins", type(bins).__name__, "a Series indexed by the same qids as pass1")
    frame = pd.DataFrame({"bin": bins.reindex(pass1.index).to_numpy(), "pass1": values})
    table = frame.groupby("bin", sort=True)["pass1"].agg(
        questions="size", pass1_min="min", pass1_max="max", pass1_mean="mean")
    return table.reset_index()


def predicted_bins(samples: pd.DataFrame, score_col: str, num_bins: int = 5) -> pd.DataFrame:
    """Predicted difficulty bins (no ground truth): quantiles of each question's mean verifier score of its final
    answer over `samples` (qid, `score_col`), cut as `oracle_bins` cuts pass@1; bin 1 has the highest mean score.

    Returns DataFrame with columns qid, score (the mean), samples (how many were averaged), bin."""
    for col in ("qid", score_col):
        if col not in samples.columns:
            fail("samples", f"columns {list(samples.columns)}", f"a table with a {col!r} column")
    per_q = samples.groupby("qid")[score_col].agg(score="mean", samples="size")
    bins = oracle_bins(per_q.score, num_bins)
    return per_q.assign(bin=bins).reset_index()
