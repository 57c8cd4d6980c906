"""Compute-optimal test-time scaling (Snell et al., 2024, Eq. 1): per difficulty bin and budget, the setting with the
best accuracy, chosen by cross-validation over questions; the efficiency ratio against best-of-N; and a per-bin
allocation of the budget itself. Pure functions of the one results table (`results.RESULT_COLUMNS`), so a table from
real models goes through the same code.

    rows = results[results.setting.isin(candidates)]                # one candidate per setting, every budget
    co, choices = compute_optimal(rows, folds=2, seed=0, setting="compute-optimal, oracle bins")
    eff = efficiency_ratio(co, reference_rows)                      # budget, ratio, low, high, reached, ...
    adaptive = allocate_budget(rows, mean_budget=16, folds=2, seed=0)  # a budget per bin, same mean compute

`bin` is whatever binning the caller put in the rows (oracle bins, predicted bins, one bin for "no binning"). The
selection is 2-fold by default, as in the paper: questions of a bin are split into folds at random (seeded), the
setting is chosen on the other folds' questions of the bin and scored on the held-out fold, so no question's own
outcome ever chooses its setting. Each question's accuracy is its `correct` averaged over the candidate's seeds.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from .checks import check, check_int
from .results import RESULT_COLUMNS

CHOICE_COLUMNS = ["bin", "budget", "fold", "chosen", "train_questions", "train_accuracy"]
MAX_ALLOCATIONS = 2_000_000  # budget grid ** bins: the exhaustive search of `allocate_budget` stays under a second


def _check_rows(rows: pd.DataFrame, candidates: list[str]) -> None:
    missing = [c for c in ["budget", "seed", "qid", "bin", "correct", *candidates] if c not in rows.columns]
    check(not missing, "rows", f"columns {list(rows.columns)}", f"a results table with the columns {missing} too")
    check(len(rows) > 0, "rows", "<empty>", "at least one row of the results table")
    check(rows.bin.notna().all(), "rows.bin", "missing values", "a difficulty bin on every row")


def candidate_labels(rows: pd.DataFrame, candidates: list[str]) -> pd.Series:
    """One label per row naming its candidate: the values of the `candidates` columns, joined."""
    if len(candidates) == 1:
        return rows[candidates[0]].astype(str)
    return rows[candidates].astype(str).agg(", ".join, axis=1) if len(rows) else pd.Series([], dtype=str)


def assign_folds(bins: pd.Series, folds: int, seed: int) -> pd.Series:
    """qid -> fold in 0..folds-1: within each bin the questions (sorted) are shuffled with the seed and dealt round
    robin, so every fold holds about 1/folds of every bin."""
    check_int("folds", folds, lo=2)
    out = {}
    for b, qids in bins.groupby(bins).groups.items():
        order = np.random.default_rng([seed, int(b)]).permutation(np.sort(np.asarray(qids)))
        out.update({q: i % folds for i, q in enumerate(order)})
    return pd.Series(out, name="fold").reindex(bins.index)


def _accuracy_matrix(part: pd.DataFrame) -> pd.DataFrame:
    """question x candidate accuracy (mean over seeds) at one budget, on the questions every candidate has."""
    acc = part.groupby(["qid", "candidate"]).correct.mean().unstack("candidate")
    return acc.dropna()


def compute_optimal(rows: pd.DataFrame, candidates: list[str] = ("setting",), folds: int = 2, seed: int = 0,
                    setting: str = "compute-optimal") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(result rows, choices) of the compute-optimal strategy: at each budget and bin, the candidate (the distinct
    values of the `candidates` columns) with the best mean accuracy on the bin's questions outside a question's
    fold is the one that question gets. Ties go to the first candidate in sorted order.

    The result rows are the chosen candidate's own rows (every seed, measured costs) with method "compute_optimal",
    `setting`, and `chosen` naming the candidate; at each budget only questions that every candidate of that budget
    has are scored. A bin with no question outside a fold chooses on all questions outside the fold. `choices` has
    CHOICE_COLUMNS: one row per (bin, budget, fold)."""
    candidates = list(candidates)
    _check_rows(rows, candidates)
    rows = rows.assign(candidate=candidate_labels(rows, candidates))
    bins = rows.groupby("qid").bin.first()
    fold_of = assign_folds(bins, folds, seed)
    out, choices = [], []
    for budget, part in rows.groupby("budget", sort=True):
        acc = _accuracy_matrix(part)
        check(len(acc) > 0, "rows", f"budget {budget}", "questions that every candidate at that budget has")
        fold, qbin = fold_of[acc.index].to_numpy(), bins[acc.index].to_numpy()
        for f in range(folds):
            for b in np.unique(qbin[fold == f]):
                train = (fold != f) & (qbin == b)
                if not train.any():
                    train = fold != f
                scores = acc[train].mean(axis=0).to_numpy()
                best = acc.columns[int(np.argmax(scores))]  # columns are sorted: ties go to the first
                held_out = acc.index[(fold == f) & (qbin == b)]
                choices.append({"bin": b, "budget": budget, "fold": f, "chosen": best,
                                "train_questions": int(train.sum()), "train_accuracy": float(scores.max())})
                out.append(part[(part.candidate == best) & part.qid.isin(held_out)])
    picked = pd.concat(out, ignore_index=True)
    picked = picked.assign(method="compute_optimal", setting=setting, chosen=picked.candidate)
    return picked[RESULT_COLUMNS + ["chosen"]], pd.DataFrame(choices, columns=CHOICE_COLUMNS)


def budget_to_reach(budgets: np.ndarray, curves: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(budget, reached): the smallest budget at which each curve reaches each target, linear in log2 budget between
    the grid points. `curves` (..., M) at increasing `budgets` (M,), `targets` (..., B). A target at or below the
    curve's first point gives the first budget; one the curve never reaches gives the last budget, reached False
    (the budget is then a lower bound)."""
    logb = np.log2(np.asarray(budgets, dtype=float))
    ge = curves[..., None, :] >= targets[..., :, None] - 1e-12  # (..., B, M)
    reached = ge.any(-1)
    j = np.where(reached, ge.argmax(-1), len(logb) - 1)
    lo = np.maximum(j - 1, 0)
    tiled = np.broadcast_to(curves[..., None, :], ge.shape)  # each target's own copy of its curve, no copy made
    y0 = np.take_along_axis(tiled, lo[..., None], -1)[..., 0]
    y1 = np.take_along_axis(tiled, j[..., None], -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where((j > 0) & reached & (y1 > y0), (targets - y0) / (y1 - y0), 1.0)
    x = logb[lo] + np.clip(frac, 0.0, 1.0) * (logb[j] - logb[lo])
    return 2.0 ** x, reached


def efficiency_ratio(rows: pd.DataFrame, reference: pd.DataFrame, resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> pd.DataFrame:
    """For each budget N of `rows` (e.g. compute-optimal): the budget N' at which `reference` (e.g. best-of-N
    weighted) reaches the same mean accuracy (`budget_to_reach`), and the ratio N' / N, with a percentile bootstrap
    CI over questions (scipy.stats.bootstrap; both curves resampled on the same questions; the choices that made
    `rows` are held fixed). Only questions both tables have at every budget count.

    Columns: budget, accuracy, reference_budget, ratio, low, high, reached (False: the reference never gets there
    within its budgets, so reference_budget and the ratio are lower bounds), questions."""
    check_int("resamples", resamples, lo=100)
    a = rows.groupby(["qid", "budget"]).correct.mean().unstack("budget")
    r = reference.groupby(["qid", "budget"]).correct.mean().unstack("budget")
    both = a.dropna().index.intersection(r.dropna().index)
    check(len(both) >= 2, "rows", f"{len(both)} shared questions", "at least 2 questions in both tables")
    a, r = a.loc[both].sort_index(axis=1), r.loc[both].sort_index(axis=1)
    budgets, ref_budgets = a.columns.to_numpy(dtype=float), r.columns.to_numpy(dtype=float)
    av, rv = a.to_numpy(), r.to_numpy()

    def ratio(idx, axis=-1):
        idx = np.asarray(idx, dtype=int)
        target, curve = av[idx].mean(axis=-2), rv[idx].mean(axis=-2)
        # scipy wants the statistic's own axis first, the resamples after it
        return np.moveaxis(budget_to_reach(ref_budgets, curve, target)[0] / budgets, -1, 0)

    index = np.arange(len(both))
    point_target, point_curve = av.mean(0), rv.mean(0)
    ref_at, reached = budget_to_reach(ref_budgets, point_curve, point_target)
    res = stats.bootstrap((index,), ratio, n_resamples=resamples, confidence_level=confidence, method="percentile",
                          vectorized=True, batch=200, random_state=np.random.default_rng(seed))
    return pd.DataFrame({"budget": budgets.astype(int), "accuracy": point_target, "reference_budget": ref_at,
                         "ratio": ref_at / budgets, "low": res.confidence_interval.low,
                         "high": res.confidence_interval.high, "reached": reached, "questions": len(both)})


def peak(efficiency: pd.DataFrame) -> dict:
    """The budget where the efficiency ratio is largest, its value and CI (a lower bound when not reached)."""
    row = efficiency.loc[efficiency.ratio.idxmax()]
    return {"budget": int(row.budget), "ratio": float(row.ratio), "low": float(row.low), "high": float(row.high),
            "reference_budget": float(row.reference_budget), "reached": bool(row.reached)}


def _best_per_budget(acc_by_budget: dict, train: np.ndarray) -> tuple[np.ndarray, list]:
    """(accuracy of the best candidate at each budget on `train` questions, that candidate)."""
    best_acc, best = [], []
    for acc in acc_by_budget.values():
        scores = acc[train].mean(axis=0).to_numpy()
        best_acc.append(scores.max())
        best.append(acc.columns[int(np.argmax(scores))])
    return np.array(best_acc), best


def allocate_budget(rows: pd.DataFrame, mean_budget: float, candidates: list[str] = ("setting",), folds: int = 2,
                    seed: int = 0, setting: str = "adaptive budget") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(result rows, allocation): beyond the paper, the budget itself follows the difficulty. On the other folds'
    questions, each bin gets the budget (and its best candidate there) that maximises the expected number of
    correct answers on the held-out fold, subject to the held-out fold's mean budget being at most `mean_budget`
    (an exhaustive search over the budget grid per bin). So at equal mean compute this compares with
    `compute_optimal` at budget `mean_budget`. Rows are labelled with budget = `mean_budget`; their `generations`
    are each question's own. The allocation table: fold, bin, budget, chosen, train_accuracy."""
    candidates = list(candidates)
    _check_rows(rows, candidates)
    check(np.isfinite(mean_budget) and mean_budget >= rows.budget.min(), "mean_budget", mean_budget,
          f"a number >= the smallest budget of the rows ({rows.budget.min()})")
    rows = rows.assign(candidate=candidate_labels(rows, candidates))
    acc_by_budget = {b: _accuracy_matrix(p) for b, p in rows.groupby("budget", sort=True)}
    common = sorted(set.intersection(*(set(a.index) for a in acc_by_budget.values())))
    check(len(common) > 0, "rows", "no question at every budget", "questions that every budget's candidates have")
    acc_by_budget = {b: a.loc[common] for b, a in acc_by_budget.items()}
    grid = np.array(list(acc_by_budget), dtype=float)
    bins = rows.groupby("qid").bin.first()[common]
    fold_of = assign_folds(bins, folds, seed).to_numpy()
    qbin = bins.to_numpy()
    bin_values = np.unique(qbin)
    check(len(grid) ** len(bin_values) <= MAX_ALLOCATIONS, "rows", f"{len(grid)} budgets x {len(bin_values)} bins",
          f"at most {MAX_ALLOCATIONS:,} allocations (budgets ** bins)")
    out, allocation = [], []
    for f in range(folds):
        held = fold_of == f
        best_acc, best = [], []
        for b in bin_values:
            train = (fold_of != f) & (qbin == b)
            acc_b, cand_b = _best_per_budget(acc_by_budget, train if train.any() else fold_of != f)
            best_acc.append(acc_b)
            best.append(cand_b)
        counts = np.array([(held & (qbin == b)).sum() for b in bin_values], dtype=float)
        combos = np.array(list(itertools.product(range(len(grid)), repeat=len(bin_values))))
        spend = (grid[combos] * counts).sum(1)
        gain = np.stack([np.asarray(best_acc)[i, combos[:, i]] * counts[i] for i in range(len(bin_values))]).sum(0)
        gain[spend > mean_budget * counts.sum() + 1e-9] = -np.inf
        pick = combos[int(np.argmax(gain))]  # ties: the first in product order, i.e. the smallest budgets
        for i, b in enumerate(bin_values):
            budget, cand = grid[pick[i]], best[i][pick[i]]
            allocation.append({"fold": f, "bin": b, "budget": int(budget), "chosen": cand,
                               "train_accuracy": float(best_acc[i][pick[i]])})
            qids = np.asarray(common)[held & (qbin == b)]
            out.append(rows[(rows.budget == budget) & (rows.candidate == cand) & rows.qid.isin(qids)])
    picked = pd.concat(out, ignore_index=True)
    picked = picked.assign(method="compute_optimal", setting=setting, chosen=picked.candidate, budget=mean_budget)
    return picked[RESULT_COLUMNS + ["chosen"]], pd.DataFrame(allocation)


COST_COLUMNS = ["generations", "policy_tokens", "prefill_tokens", "verifier_tokens", "verifier_calls", "flops"]


def charge(rows: pd.DataFrame, cost: pd.DataFrame, setting: str) -> pd.DataFrame:
    """`rows` relabelled `setting`, each question's costs raised by its row of `cost` (qid and COST_COLUMNS), e.g.
    the samples and verifier calls that predicted its difficulty. Questions without a cost row are an error."""
    missing = sorted(set(rows.qid) - set(cost.qid))
    check(not missing, "cost", f"{len(missing)} questions without a row (e.g. {missing[:3]})", "a row per question")
    extra = cost.set_index("qid")[COST_COLUMNS]
    out = rows.assign(setting=setting)
    for col in COST_COLUMNS:
        out[col] = out[col] + out.qid.map(extra[col])
    return out
