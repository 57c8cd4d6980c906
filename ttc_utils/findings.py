"""Deciding the paper's findings: paired comparisons on the same questions, with a bootstrap CI and a verdict.

A finding is a claim that one arm beats another: "beam search beats best-of-N weighted at N=4". An `Arm` picks rows
of the one results table (`results.RESULT_COLUMNS`: method, setting, budget, seed, qid, bin, correct, ...); each
question's value is its accuracy averaged over the arm's seeds. A `Claim` is a difference of two arms on the questions
both have, or a difference of two such differences ("the gap grows with N", "helps hard questions more"). The
statistic is the mean over questions; its 95% CI is a bootstrap over questions (scipy.stats.bootstrap, 10,000
resamples; paired, so a question's arms are resampled together). The verdict:

    holds           the CI lies above +margin (the paper's direction)
    fails           the CI lies below -margin
    inconclusive    neither
    uninformative   every arm at floor (all 0) or ceiling (all 1), or fewer than 10 questions where the arms differ

    claim = Claim("beam search beats best-of-N weighted at N=4",
                  Arm(setting="beam M=4", budget=4), Arm(setting="best-of-N weighted", budget=4))
    decide(rows, [claim])      # finding, difference, low, high, verdict, questions, differing, arms
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .checks import check, check_int

VERDICTS = ("holds", "fails", "inconclusive", "uninformative")
FINDING_COLUMNS = ["finding", "difference", "low", "high", "verdict", "questions", "differing", "arms"]
MIN_DIFFERING = 10  # fewer questions where the arms differ than this and a CI says nothing


@dataclass(frozen=True)
class Arm:
    """Rows of the results table: equality on each given column (a tuple or list means "one of")."""
    setting: str | None = None
    budget: int | None = None
    method: str | None = None
    bin: tuple | None = None  # difficulty bins, e.g. (1, 2)
    where: dict = field(default_factory=dict)  # any other column -> value(s)

    def conditions(self) -> dict:
        out = {k: v for k, v in (("setting", self.setting), ("budget", self.budget), ("method", self.method),
                                 ("bin", self.bin)) if v is not None}
        return {**out, **self.where}

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.conditions().items())

    def per_question(self, rows: pd.DataFrame) -> pd.Series:
        """Each selected question's accuracy averaged over its seeds (and any other rows the arm selects)."""
        mask = np.ones(len(rows), dtype=bool)
        for col, value in self.conditions().items():
            check(col in rows.columns, "arm", self.label(), f"columns of the results table ({list(rows.columns)})")
            values = list(value) if isinstance(value, (list, tuple, set)) else [value]
            mask &= rows[col].isin(values).to_numpy()
        return rows[mask].groupby("qid").correct.mean()


@dataclass(frozen=True)
class Claim:
    """`better` minus `worse` > 0; with `then`, (better - worse) minus (then's better - then's worse) > 0.

    `then` states what the first difference is compared with: "beam's edge is larger at N=4 than at N=256" is
    Claim(edge at 4: beam4, bon4, then=(beam256, bon256)). When both differences are on the same questions the
    comparison is paired; on disjoint questions (easy vs hard bins) each side is resampled on its own.
    """
    finding: str
    better: Arm
    worse: Arm
    then: tuple[Arm, Arm] | None = None
    margin: float = 0.0  # the smallest difference that counts (accuracy points, e.g. 0.01)

    def arms(self) -> list[Arm]:
        return [self.better, self.worse, *(self.then or ())]


def paired(rows: pd.DataFrame, better: Arm, worse: Arm) -> pd.DataFrame:
    """Per question both arms have: a (better's accuracy), b (worse's), d = a - b."""
    a, b = better.per_question(rows), worse.per_question(rows)
    both = a.index.intersection(b.index)
    return pd.DataFrame({"a": a[both], "b": b[both], "d": a[both] - b[both]})


def _at_bound(p: pd.DataFrame) -> bool:
    values = np.concatenate([p.a.to_numpy(), p.b.to_numpy()])
    return len(values) == 0 or bool(np.all(values == 0) or np.all(values == 1))


def _ci(samples: list[np.ndarray], statistic, resamples: int, seed: int, paired_: bool) -> tuple[float, float]:
    if any(len(s) < 2 for s in samples) or all(np.all(s == s[0]) for s in samples):
        est = statistic(*samples)
        return est, est  # nothing varies: the CI is the point (and the verdict comes from `differing`)
    res = stats.bootstrap(tuple(samples), statistic, n_resamples=resamples, confidence_level=0.95,
                          method="percentile", paired=paired_, vectorized=True, axis=-1,
                          random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def verdict(low: float, high: float, margin: float, informative: bool) -> str:
    if not informative:
        return "uninformative"
    if low > margin:
        return "holds"
    if high < -margin:
        return "fails"
    return "inconclusive"


def _mean(x, axis=-1):
    return x.mean(axis=axis)


def _mean_gap(x, y, axis=-1):
    return x.mean(axis=axis) - y.mean(axis=axis)


def decide_claim(rows: pd.DataFrame, claim: Claim, resamples: int = 10_000, seed: int = 0) -> dict:
    """One claim's row: finding, difference (the statistic), low, high, verdict, questions, differing, arms."""
    check_int("resamples", resamples, lo=100)
    first = paired(rows, claim.better, claim.worse)
    arms = [claim.better, claim.worse, *(claim.then or ())]
    if claim.then is None:
        samples, statistic, is_paired = [first.d.to_numpy()], _mean, True
        questions, differing, bounded = len(first), int((first.d != 0).sum()), _at_bound(first)
    else:
        second = paired(rows, *claim.then)
        common = first.index.intersection(second.index)
        if len(common) == len(first) == len(second) and len(common) > 0:  # same questions: paired
            diff = (first.d - second.d[first.index]).to_numpy()
            samples, statistic, is_paired, differing = [diff], _mean, True, int((diff != 0).sum())
        else:  # disjoint (or partly shared) questions: each side resampled on its own
            samples, statistic, is_paired = [first.d.to_numpy(), second.d.to_numpy()], _mean_gap, False
            differing = int((first.d != 0).sum() + (second.d != 0).sum())
        questions = len(first.index.union(second.index))
        bounded = _at_bound(first) and _at_bound(second)
    if all(len(x) > 0 for x in samples):
        est = float(statistic(*samples))
        low, high = _ci(samples, statistic, resamples, seed, is_paired)
    else:
        est = low = high = np.nan
    informative = questions > 0 and not bounded and differing >= MIN_DIFFERING
    return {"finding": claim.finding, "difference": est, "low": low, "high": high,
            "verdict": verdict(low, high, claim.margin, informative), "questions": questions,
            "differing": differing, "arms": " − ".join(a.label() for a in arms[:2])
            + ("" if claim.then is None else " minus (" + " − ".join(a.label() for a in arms[2:]) + ")")}


def decide(rows: pd.DataFrame, claims: list[Claim], resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """The findings table (FINDING_COLUMNS): one row per claim, decided on `rows` (the results table)."""
    return pd.DataFrame([decide_claim(rows, c, resamples, seed) for c in claims], columns=FINDING_COLUMNS)
