"""Is it a real verifier? ROC AUC over all samples and within questions, and the score change at the first error.

    roc_auc(scores.last, pool.correct)                       # P(a correct sample outscores a wrong one)
    within_question_auc(scores.last, pool.correct, pool.qid) # the same with question difficulty taken out
    first_error_drops(task, problems, pool, scores)          # where the task knows each step's truth
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def roc_auc(scores, correct) -> float:
    """Probability that a random correct solution outscores a random incorrect one (ties count half):
    the Mann-Whitney U statistic over n_correct * n_incorrect."""
    scores, correct = np.asarray(scores, dtype=float), np.asarray(correct, dtype=bool)
    pos, neg = scores[correct], scores[~correct]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic / (len(pos) * len(neg)))


def within_question_auc(scores, correct, qids) -> float:
    """Mean over questions with both correct and incorrect samples of the per-question ROC AUC: how well a
    verifier ranks the samples of one question, with question difficulty taken out."""
    df = pd.DataFrame({"s": np.asarray(scores, dtype=float), "c": np.asarray(correct, dtype=bool),
                       "q": np.asarray(qids)})
    # `roc_auc` per question, all questions at once (one call per question took ~2 s on a 200-question pool): the
    # Mann-Whitney U is the correct samples' rank sum (ties averaged) less its least value, n_pos (n_pos + 1) / 2
    by = df.groupby("q")
    rank = by.s.rank(method="average")
    g = pd.DataFrame({"n": by.size(), "pos": by.c.sum(), "rank_sum": rank.where(df.c, 0.0).groupby(df.q).sum(),
                      "nan": df.s.isna().groupby(df.q).any()})  # a NaN score makes its question's AUC NaN
    g = g[(g.pos > 0) & (g.pos < g.n)]
    aucs = ((g.rank_sum - g.pos * (g.pos + 1) / 2) / (g.pos * (g.n - g.pos))).mask(g.nan)
    return float(np.mean(aucs.to_numpy())) if len(aucs) else float("nan")


def first_error_drops(task, problems: list, samples: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per sampled solution whose first wrong step j (by the task's step truth) has a step before it: does the
    verifier's score fall from step j-1 to step j? Columns qid, sample_index, first_error, before, at, drop.
    Empty for a task without step truth."""
    by_qid = {p.qid: p for p in problems}
    m = samples[["qid", "sample_index", "text"]].merge(scores[["qid", "sample_index", "step_scores"]],
                                                       on=["qid", "sample_index"])
    rows = []
    for qid, i, text, s in zip(m.qid, m.sample_index, m.text, m.step_scores):
        truth = task.step_truth(by_qid[qid], task.through_answer(text))
        j = next((k for k, ok in enumerate(truth) if not ok), None) if truth is not None else None
        if j is not None and 1 <= j < len(s):
            rows.append({"qid": qid, "sample_index": i, "first_error": j, "before": s[j - 1], "at": s[j],
                         "drop": bool(s[j] < s[j - 1])})
    return pd.DataFrame(rows, columns=["qid", "sample_index", "first_error", "before", "at", "drop"])


def quality_row(name: str, frame: pd.DataFrame, col: str) -> dict:
    """One row of a verifier-quality table: ROC AUC and within-question AUC of `frame[col]` against `correct`."""
    return {"verifier": name, "score": col, "roc_auc": roc_auc(frame[col], frame.correct),
            "within_question_auc": within_question_auc(frame[col], frame.correct, frame.qid)}


def quality_table(rows: list[tuple[str, pd.DataFrame, str]]) -> pd.DataFrame:
    """A verifier-quality table from (name, scored samples with `correct` and `qid`, score column) triples."""
    return pd.DataFrame([quality_row(name, frame, col) for name, frame, col in rows])
