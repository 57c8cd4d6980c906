"""The one results table: a tidy row per (method, setting, budget, seed, question) for every selection and search
run, with its measured costs. Curves, per-bin tables and findings are functions of this table, so a results table
made from real models goes through the same code.

    rows = pd.concat([selection_results(pool, "majority", budgets, 200, seed, "majority", bins=bins),
                      search_results(runs, bins)])
    curve = summarize(rows[rows.setting == "majority"], by=["setting"])   # budget, accuracy, low, high, setting

Columns (RESULT_COLUMNS): method (the rule or search family: majority, best_of_n, best_of_n_weighted, pass_at_n,
beam, lookahead, dvts), setting (its label, e.g. "beam M=4"), budget (generations, the paper's x), seed, qid, bin,
correct (the question's accuracy: 0/1 for a search run, the expected accuracy over random subsets for a selection
rule), generations, policy_tokens, verifier_tokens, verifier_calls (per question).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .estimators import accuracy_curve, curve_summary, pass_at_k_curve

RESULT_COLUMNS = ["method", "setting", "budget", "seed", "qid", "bin", "correct", "generations", "policy_tokens",
                  "verifier_tokens", "verifier_calls"]
VERIFIER_RULES = ("best_of_n", "best_of_n_weighted")


def selection_results(samples: pd.DataFrame, rule: str, budgets: list[int], num_subsets: int, seed: int,
                      setting: str, score_col: str | None = None, bins: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of `rule` ("pass_at_n", "majority", "best_of_n", "best_of_n_weighted") applied to random subsets of
    each question's samples at every budget. Costs are what N samples of the question cost on average: N
    generations, N times its mean policy tokens, and for a verifier rule N calls and N times its mean verifier
    tokens."""
    if rule == "pass_at_n":
        curve = pass_at_k_curve(samples, budgets)
    else:
        curve = accuracy_curve(samples, budgets, rule, num_subsets, seed,
                               **({"score_col": score_col} if score_col else {}))
    per_q = samples.groupby("qid").agg(policy_tokens=("num_tokens", "mean"))
    uses_verifier = rule in VERIFIER_RULES
    per_q["verifier_tokens"] = samples.groupby("qid").verifier_tokens.mean() if uses_verifier else 0.0
    out = curve.join(per_q, on="qid")
    n = out.budget.to_numpy()
    out = out.assign(method=rule, setting=setting, seed=0, correct=out.accuracy, generations=n,
                     policy_tokens=out.policy_tokens * n, verifier_tokens=out.verifier_tokens * n,
                     verifier_calls=n if uses_verifier else 0)
    return _with_bins(out, bins)


def search_results(runs: pd.DataFrame, bins: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows of search runs (`stages.prm_search.run_search_plan`: one row per setting, seed and question)."""
    # a run's own `method` (beam / dvts) and derived `seed` give way to its plot style and its search seed
    out = runs.drop(columns=["method", "seed"], errors="ignore").rename(
        columns={"style": "method", "label": "setting", "search_seed": "seed"})
    return _with_bins(out.assign(correct=out.correct.astype(float)), bins)


def _with_bins(rows: pd.DataFrame, bins: pd.DataFrame | None) -> pd.DataFrame:
    rows = rows.assign(bin=rows.qid.map(bins.set_index("qid").bin) if bins is not None else np.nan)
    return rows[RESULT_COLUMNS].reset_index(drop=True)


def accounted(rows: pd.DataFrame, accounting: str) -> pd.DataFrame:
    """`rows` with `budget` as the x position under `accounting`: arXiv v1 counts generations only; ICLR also
    counts one generation per verifier call, which doubles the cost of every verifier-based method."""
    uses_verifier = rows.verifier_calls.to_numpy() > 0
    return rows.assign(budget=np.where(uses_verifier & (accounting == "iclr"), rows.budget * 2, rows.budget))


def summarize(rows: pd.DataFrame, by: list[str], seed: int = 0) -> pd.DataFrame:
    """Per group of `by` and budget: mean accuracy over questions (each question's accuracy averaged over seeds)
    with a 95% bootstrap band over questions. Columns budget, accuracy, low, high, *by; groups in sorted order."""
    per_q = rows.groupby([*by, "budget", "qid"], as_index=False).correct.mean()  # sorted by qid within a group
    frames = [curve_summary(g.rename(columns={"correct": "accuracy"}), seed=seed).assign(
        **dict(zip(by, key if isinstance(key, tuple) else (key,)))) for key, g in per_q.groupby(by)]
    return pd.concat(frames, ignore_index=True)


def accuracy_at(summary: pd.DataFrame, by: str) -> pd.Series:
    """summary (from `summarize`) as a Series indexed by (its `by` column, budget)."""
    return summary.set_index([by, "budget"]).accuracy
