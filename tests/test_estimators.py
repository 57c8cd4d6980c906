"""Estimators checked against exhaustive enumeration on small pools, plus bookkeeping and sanity checks."""
import math
from collections import defaultdict
from fractions import Fraction
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from ttc_utils.estimators import (
    RULES,
    accuracy_curve,
    best_of_n,
    best_of_n_weighted,
    bootstrap_ci,
    curve_summary,
    expected_accuracy,
    majority,
    pass_at_k,
    pass_at_k_curve,
    select,
)

# ----------------------------------------------------------------------------------------------------
# pass@k


def enumerated_pass_at_k(n, c, k):
    """Share of all k-subsets of n samples (the first c correct) that hold a correct sample."""
    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration():
    cases = [(n, c, k) for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)]
    for n, c, k in cases:
        assert pass_at_k(n, c, k) == pytest.approx(enumerated_pass_at_k(n, c, k), abs=1e-9), (n, c, k)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 5, 1) == 1.0 and pass_at_k(5, 1, 5) == 1.0
    # vectorised over n and c (k broadcast), same values as the scalar form
    n, c, k = (np.array(x) for x in zip(*cases))
    expected = [enumerated_pass_at_k(*case) for case in cases]
    np.testing.assert_allclose(pass_at_k(n, c, k), expected, atol=1e-9)
    out = pass_at_k(np.array([8, 8, 8]), np.array([0, 2, 8]), 3)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    assert isinstance(pass_at_k(8, 2, 3), float)


def test_pass_at_k_is_stable_for_large_pools():
    exact = 1 - Fraction(math.comb(250, 100), math.comb(300, 100))
    assert pass_at_k(300, 50, 100) == pytest.approx(float(exact), rel=1e-12)
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4, rel=1e-12)
    assert pass_at_k(10_000, 3, 10_000) == 1.0


@pytest.mark.parametrize("n, c, k, name", [(5, 2, 0, "k"), (5, 2, 6, "k"), (5, 6, 1, "c"), (5, -1, 1, "c"),
                                           (0, 0, 1, "n"), (5.5, 2, 1, "n"), (True, 1, 1, "n")])
def test_pass_at_k_rejects_bad_input(n, c, k, name):
    with pytest.raises(ValueError, match=f"^{name}="):
        pass_at_k(n, c, k)


# ----------------------------------------------------------------------------------------------------
# selection rules against exact enumeration (ties averaged analytically)


def exact_subset_accuracy(rule, answers, correct, scores):
    """Probability the rule's pick on this subset is correct, with a uniform tie-break over the winners."""
    present = [i for i, a in enumerate(answers) if a is not None]
    if not present:
        return 0.0
    if rule == "best_of_n":
        top = max(scores[i] for i in present)
        winners = [correct[i] for i in present if scores[i] == top]
    else:
        total, answer_correct = defaultdict(float), {}
        for i in present:
            total[answers[i]] += 1.0 if rule == "majority" else scores[i]
            answer_correct[answers[i]] = correct[i]
        top = max(total.values())
        winners = [answer_correct[a] for a, v in total.items() if v == top]
    return sum(winners) / len(winners)


def exact_expected_accuracy(rule, answers, correct, scores, budget):
    subsets = list(combinations(range(len(answers)), budget))
    return sum(exact_subset_accuracy(rule, [answers[i] for i in s], [correct[i] for i in s],
                                     [scores[i] for i in s]) for s in subsets) / len(subsets)


def random_pool(rng, n=6):
    # few distinct answers and dyadic scores, so ties (in counts, top scores and score sums) are common
    # and float sums are exact
    answers = [None if u < 0.15 else int(v) for u, v in zip(rng.random(n), rng.integers(0, 3, n))]
    scores = [float(s) for s in rng.choice([0.25, 0.5, 0.75, 1.0], n)]
    return answers, [a == 0 for a in answers], scores


HAND_POOLS = [
    # answer 1 is correct; full-pool score sums tie 0.75 / 0.75 / 0.75; the missing sample scores highest
    ([1, 2, 2, None, 3, 1], [True, False, False, False, False, True], [0.5, 0.25, 0.5, 1.0, 0.75, 0.25]),
    # half the samples have no answer (and top scores): small subsets are often all-missing
    ([None, None, 4, 4, 5, None], [False, False, False, False, True, False], [1.0, 1.0, 0.25, 0.25, 0.5, 1.0]),
]
POOLS = HAND_POOLS + [random_pool(np.random.default_rng(seed)) for seed in range(4)]


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("pool_index", range(len(POOLS)))
def test_expected_accuracy_matches_enumeration(rule, pool_index):
    answers, correct, scores = POOLS[pool_index]
    num_subsets = 4000
    rng = np.random.default_rng(100 + pool_index)
    for budget in range(1, len(answers) + 1):
        exact = exact_expected_accuracy(rule, answers, correct, scores, budget)
        estimate = expected_accuracy(np.array(answers, dtype=object), np.array(correct), np.array(scores),
                                     budget, rule, num_subsets, rng)
        # each subset's outcome is an independent Bernoulli(exact) draw
        stderr = math.sqrt(exact * (1 - exact) / num_subsets)
        assert abs(estimate - exact) <= 4 * stderr + 1e-12, (rule, budget, estimate, exact)


def test_accuracy_curve_matches_enumeration():
    # accuracy_curve shares one set of random permutations across budgets; each budget must stay unbiased
    answers, correct, scores = HAND_POOLS[0]
    pool = pd.DataFrame({"qid": "q", "answer": pd.array(answers, dtype="Int64"), "correct": correct,
                         "score": scores})
    budgets = list(range(1, len(answers) + 1))
    for rule in RULES:
        curve = accuracy_curve(pool, budgets, rule, num_subsets=4000, seed=5)
        for budget, estimate in zip(curve.budget, curve.accuracy):
            exact = exact_expected_accuracy(rule, answers, correct, scores, budget)
            assert abs(estimate - exact) <= 4 * math.sqrt(exact * (1 - exact) / 4000) + 1e-12, (rule, budget)


# ----------------------------------------------------------------------------------------------------
# bookkeeping of single selections


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA])
def test_missing_answers_are_never_selected(missing):
    rng = np.random.default_rng(0)
    answers = np.array([missing, missing, missing, 7], dtype=object)
    correct = np.array([False, False, False, True])
    scores = np.array([9.0, 9.0, 9.0, 0.1])
    for seed in range(20):
        rng = np.random.default_rng(seed)
        assert majority(answers, correct, None, rng)
        assert best_of_n(answers, correct, scores, rng)
        assert best_of_n_weighted(answers, correct, scores, rng)


@pytest.mark.parametrize("answers", [[None, None], np.array([np.nan, np.nan]),
                                     pd.array([None, None], dtype="Int64"), np.array([pd.NA, None], dtype=object)])
def test_all_missing_is_wrong(answers):
    for rule in RULES:
        assert select(rule, answers, [False, False], [np.nan, 1.0], np.random.default_rng(0)) is False
    assert expected_accuracy(answers, [False, False], [0.5, 0.5], 2, "best_of_n", 10,
                             np.random.default_rng(0)) == 0.0


def test_weighted_vote_sums_scores_per_answer():
    answers, correct = ["A", "A", "B"], [True, True, False]
    rng = np.random.default_rng(0)
    assert best_of_n_weighted(answers, correct, [0.4, 0.4, 0.7], rng)        # 0.8 for A beats 0.7 for B
    assert not best_of_n(answers, correct, [0.4, 0.4, 0.7], rng)             # the single best sample is B
    assert not best_of_n_weighted(answers, correct, [0.3, 0.3, 0.7], rng)    # 0.6 for A loses to 0.7
    # negative scores (e.g. logits): an absent answer must not win with an empty sum of 0
    assert best_of_n_weighted(["A", "B", "B"], [True, False, False], [-1.0, -0.6, -0.6], rng)


def test_best_of_n_picks_the_top_score():
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.random(10)
        answers = np.arange(10)
        correct = answers == scores.argmax()
        assert best_of_n(answers, correct, scores, rng)


def test_ties_are_random_but_seeded():
    answers, correct, scores = [1, 2], [True, False], [0.5, 0.5]
    for rule in RULES:
        outcomes = {select(rule, answers, correct, scores, np.random.default_rng(seed)) for seed in range(50)}
        assert outcomes == {True, False}, rule
        first = [select(rule, answers, correct, scores, np.random.default_rng(seed)) for seed in range(20)]
        again = [select(rule, answers, correct, scores, np.random.default_rng(seed)) for seed in range(20)]
        assert first == again


def test_rule_validation():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"rule='oracle'.*best_of_n.*majority"):
        select("oracle", [1], [True], None, rng)
    with pytest.raises(ValueError, match=r"^scores=None"):
        best_of_n([1, 2], [True, False], None, rng)
    with pytest.raises(ValueError, match=r"^scores="):
        best_of_n([1, 2], [True, False], [0.3, np.nan], rng)  # NaN allowed only for a missing answer
    with pytest.raises(ValueError, match=r"^correct"):
        majority([1, 1], [True, False], None, rng)          # same answer, different grades
    with pytest.raises(ValueError, match=r"^correct"):
        majority([1, 2], [True], None, rng)
    with pytest.raises(ValueError, match=r"^rng="):
        majority([1, 2], [True, False], None, 0)


def test_budget_validation():
    rng = np.random.default_rng(0)
    answers, correct = [1, 2, 3], [True, False, False]
    for budget in (0, -1, 4, 2.0, True):
        with pytest.raises(ValueError, match=f"^budget={budget!r} is not allowed"):
            expected_accuracy(answers, correct, None, budget, "majority", 10, rng)
    with pytest.raises(ValueError, match=r"^num_subsets=0"):
        expected_accuracy(answers, correct, None, 1, "majority", 0, rng)
    with pytest.raises(ValueError, match=r"rule='vote'"):
        expected_accuracy(answers, correct, None, 1, "vote", 10, rng)
    pool = make_pool(np.random.default_rng(0), num_questions=2, num_samples=4)
    with pytest.raises(ValueError, match=r"^budget=5 is not allowed: expected an int in \[1, 4\]"):
        accuracy_curve(pool, [1, 5], "majority")
    with pytest.raises(ValueError, match=r"^budget=0 is not allowed: expected an int >= 1"):
        accuracy_curve(pool, [0, 1], "majority")
    with pytest.raises(ValueError, match=r"^budget=5"):
        pass_at_k_curve(pool, [5])
    with pytest.raises(ValueError, match=r"rule='oracle'"):
        accuracy_curve(pool, [1], "oracle")


def test_whole_pool_budget_averages_tie_breaks_only():
    # at N = n every subset is the whole pool: a 2-2 tie between a correct and a wrong answer gives 1/2
    acc = expected_accuracy([1, 1, 2, 2], [True, True, False, False], None, 4, "majority", 4000,
                            np.random.default_rng(0))
    assert abs(acc - 0.5) < 4 * math.sqrt(0.25 / 4000)
    assert expected_accuracy([1, 1, 2], [True, True, False], None, 3, "majority", 50,
                             np.random.default_rng(0)) == 1.0


# ----------------------------------------------------------------------------------------------------
# curves over many questions


def make_pool(rng, num_questions=30, num_samples=32, p_missing=0.05):
    """Random questions whose correct answer (0) is the single most likely one, plus 4 wrong answers."""
    rows = []
    for q in range(num_questions):
        p_correct = rng.uniform(0.3, 0.6)
        probs = [p_correct] + [(1 - p_correct) / 4] * 4
        answers = rng.choice(5, size=num_samples, p=probs).astype(object)
        answers[rng.random(num_samples) < p_missing] = None
        rows.append(pd.DataFrame({"qid": f"q{q:02d}", "answer": pd.array(answers, dtype="Int64")}))
    pool = pd.concat(rows, ignore_index=True)
    pool["correct"] = (pool["answer"] == 0).fillna(False).astype(bool)
    # a weak verifier: correct samples score higher on average
    pool["score"] = rng.normal(pool["correct"].astype(float), 1.0)
    return pool


def test_accuracy_curve_is_seeded_and_order_independent():
    pool = make_pool(np.random.default_rng(0), num_questions=6, num_samples=16)
    budgets = [1, 4, 16]
    for rule in RULES:
        curve = accuracy_curve(pool, budgets, rule, num_subsets=20, seed=3)
        assert list(curve.columns) == ["qid", "budget", "accuracy"] and len(curve) == 6 * 3
        pd.testing.assert_frame_equal(curve, accuracy_curve(pool, budgets, rule, num_subsets=20, seed=3))
        # questions in reverse order (samples within a question keep their order)
        reordered = pd.concat([g for _, g in pool.groupby("qid")][::-1], ignore_index=True)
        pd.testing.assert_frame_equal(curve, accuracy_curve(reordered, budgets, rule, num_subsets=20, seed=3))
        # a question's estimate does not depend on which other questions are in the pool
        alone = accuracy_curve(pool[pool.qid == "q03"], budgets, rule, num_subsets=20, seed=3)
        np.testing.assert_array_equal(alone.accuracy, curve[curve.qid == "q03"].accuracy)
        # answers as objects with None give the same codes, hence the same draws, as nullable Int64
        as_object = pool.assign(answer=pool["answer"].astype(object).where(pool["answer"].notna(), None))
        pd.testing.assert_frame_equal(curve, accuracy_curve(as_object, budgets, rule, num_subsets=20, seed=3))
        other = accuracy_curve(pool, budgets, rule, num_subsets=20, seed=4)
        assert not other.accuracy.equals(curve.accuracy)


def test_curves_are_monotone_and_pass_bounds_majority():
    pool = make_pool(np.random.default_rng(1), num_questions=40, num_samples=64)
    budgets = [1, 2, 4, 8, 16, 32, 64]
    num_subsets = 200
    maj = accuracy_curve(pool, budgets, "majority", num_subsets=num_subsets).groupby("budget").accuracy.mean()
    oracle = pass_at_k_curve(pool, budgets)
    per_q = oracle.pivot(index="qid", columns="budget", values="accuracy")
    assert (np.diff(per_q.to_numpy(), axis=1) >= -1e-12).all()   # pass@N exactly non-decreasing per question
    oracle = oracle.groupby("budget").accuracy.mean()
    # Monte Carlo standard error of a mean over 40 questions x 200 subsets is below 0.006
    tol = 0.02
    assert (np.diff(maj.to_numpy()) >= -tol).all(), maj
    assert maj.iloc[-1] > maj.iloc[0] + 0.2                         # the correct answer is the plurality
    assert (oracle.to_numpy() >= maj.to_numpy() - tol).all()
    # at N = 1 every rule is just the share of correct samples, i.e. pass@1
    assert abs(maj.iloc[0] - oracle.iloc[0]) < tol


def test_pass_at_k_curve_matches_per_question_estimator():
    pool = make_pool(np.random.default_rng(2), num_questions=5, num_samples=12)
    curve = pass_at_k_curve(pool, [1, 3, 12])
    assert list(curve.columns) == ["qid", "budget", "accuracy"]
    for (qid, budget), acc in curve.set_index(["qid", "budget"]).accuracy.items():
        correct = pool.loc[pool.qid == qid, "correct"]
        assert acc == pytest.approx(pass_at_k(len(correct), int(correct.sum()), budget))


# ----------------------------------------------------------------------------------------------------
# confidence bands


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    values = np.random.default_rng(0).random(60)
    low, high = bootstrap_ci(values, seed=1)
    assert low < values.mean() < high
    assert bootstrap_ci(values, seed=1) == (low, high)
    assert bootstrap_ci(values, seed=2) != (low, high)
    low99, high99 = bootstrap_ci(values, confidence=0.99, seed=1)
    assert low99 < low and high < high99


def test_bootstrap_ci_degenerate_and_bad_input():
    assert bootstrap_ci([0.3] * 10) == (0.3, 0.3)
    assert bootstrap_ci([1.0]) == (1.0, 1.0)
    for kwargs, name in [({"confidence": 1.0}, "confidence"), ({"n_resamples": 0}, "n_resamples")]:
        with pytest.raises(ValueError, match=f"^{name}="):
            bootstrap_ci([0.1, 0.2], **kwargs)
    for bad in ([], [0.1, np.nan]):
        with pytest.raises(ValueError, match="^per_question_values="):
            bootstrap_ci(bad)


def test_curve_summary():
    pool = make_pool(np.random.default_rng(3), num_questions=20, num_samples=8)
    curve = pass_at_k_curve(pool, [8, 1, 4])
    summary = curve_summary(curve, seed=0)
    assert list(summary.columns) == ["budget", "accuracy", "low", "high"]
    assert list(summary.budget) == [1, 4, 8]
    assert (summary.low <= summary.accuracy).all() and (summary.accuracy <= summary.high).all()
    expected = curve.groupby("budget").accuracy.mean().to_numpy()
    np.testing.assert_allclose(summary.accuracy, expected)
    pd.testing.assert_frame_equal(summary, curve_summary(curve, seed=0))


def test_weighted_winner_is_the_answer_with_the_largest_score_sum():
    from ttc_utils.estimators import weighted_winner
    rng = np.random.default_rng(0)
    assert weighted_winner(["a", "b", "a"], [0.2, 0.5, 0.4], rng) == 0  # "a": 0.6 beats "b": 0.5
    assert weighted_winner([None, "b", "a"], [np.nan, 0.5, 0.4], rng) == 1
    assert weighted_winner([None, None], [np.nan, np.nan], rng) is None
