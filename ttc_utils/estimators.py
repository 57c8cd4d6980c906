"""Scaling-curve estimators: accuracy at a sample budget N, estimated from one pool of samples per question.

Each question has a pool of n sampled answers (graded, optionally scored by a verifier). The accuracy of
a selection rule at budget N <= n is its expected accuracy over random subsets of N samples drawn
without replacement from that pool, so one large pool gives the whole curve N = 1, 2, 4, ..., n.
pass@N (oracle selection) has an exact unbiased estimator and needs no subsets.

    pool = samples[["qid", "answer", "correct", "score"]]         # one row per sample
    curve = accuracy_curve(pool, [1, 2, 4, 8, 16], "majority", num_subsets=100, seed=0)
    oracle = pass_at_k_curve(pool, [1, 2, 4, 8, 16])
    curve_summary(curve)                                           # budget, accuracy, low, high

Selection rules (`RULES`): "majority" (most frequent answer), "best_of_n" (the sample the verifier scores
highest), "best_of_n_weighted" (the answer whose verifier scores sum highest). A missing answer (None,
NaN, pandas NA) is never selected; a subset with no answer at all counts as wrong. Ties are broken
uniformly at random with the caller's numpy Generator.
"""
from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .checks import fail

# scipy >= 1.15 names the generator argument `rng`; older versions (the project allows >= 1.13) only
# have `random_state`, which newer versions are phasing out.
_BOOTSTRAP_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


# ----------------------------------------------------------------------------------------------------
# validation helpers


def _show(value):
    """numpy scalars print as `np.int64(3)`; show them as plain Python values in error messages."""
    return value.item() if isinstance(value, np.generic) else value


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(name: str, value, lo: int = 1, hi: int | None = None, note: str = "") -> int:
    if not (_is_int(value) and value >= lo and (hi is None or value <= hi)):
        fail(name, value, (f"an int >= {lo}" if hi is None else f"an int in [{lo}, {hi}]") + note)
    return int(value)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        fail("rng", rng, "a numpy.random.Generator (e.g. numpy.random.default_rng(0))")
    return rng


def _check_rule(rule) -> str:
    if rule not in RULES:
        fail("rule", rule, f"one of {sorted(RULES)}")
    return rule


def _check_budgets(budgets) -> list[int]:
    if isinstance(budgets, (str, bytes)) or not isinstance(budgets, Iterable):
        fail("budgets", budgets, "a non-empty list of ints >= 1")
    budgets = list(budgets)
    if not budgets:
        fail("budgets", budgets, "a non-empty list of ints >= 1")
    return [_check_int("budget", b) for b in budgets]


def _as_bool_array(name: str, values, length: int) -> np.ndarray:
    """A plain bool array; 0/1 integers are accepted, but NaN/NA never silently become True."""
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.array
    if isinstance(values, pd.api.extensions.ExtensionArray):
        if values.isna().any():
            fail(name, "<contains NA>", "bool values (no missing entries)")
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != length:
        fail(f"{name}.shape", arr.shape, f"a 1-D array of length {length}, aligned with answers")
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.number) and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    if arr.dtype == object and all(isinstance(v, (bool, np.bool_, int, np.integer)) and v in (0, 1) for v in arr):
        return arr.astype(bool)
    fail(name, arr[:5].tolist(), "bool values (or 0/1)")


def _as_scores(name: str, scores, codes: np.ndarray) -> np.ndarray:
    if isinstance(scores, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        scores = pd.Series(scores).to_numpy(dtype=float, na_value=np.nan)  # nullable Float64 NA -> NaN
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 1 or len(arr) != len(codes):
        fail(f"{name}.shape", arr.shape, f"a 1-D float array of length {len(codes)}, aligned with answers")
    # A sample without an answer may lack a score (the verifier was never run on it); one with an answer may not.
    if np.isnan(arr[codes >= 0]).any():
        fail(name, "<NaN for a sample with an answer>", "a float score for every sample that has an answer")
    return arr


# ----------------------------------------------------------------------------------------------------
# pass@k


def _as_count_array(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype == bool or arr.dtype == object:
        fail(name, value, "an int or an array of ints")
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            fail(name, value, "an int or an array of ints")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        fail(name, value, "an int or an array of ints")
    return arr


def _pass_at_k_one(n: int, c: int, k: int) -> float:
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i): factors in (0, 1], no huge binomials.
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k(n, c, k):
    """Unbiased pass@k (Chen et al., 2021): probability that a random k-subset of n samples holds a correct one.

    Equals 1 - C(n-c, k) / C(n, k), computed as a product of factors in (0, 1] so it is stable for large n.

    Args:
        n: number of samples (int or int array).
        c: number of correct samples, 0 <= c <= n (int or int array, broadcast against n).
        k: budget, 1 <= k <= n (int or int array, broadcast against n and c).

    Returns:
        A float if n, c and k are all scalars, else a float array of their broadcast shape.
    """
    n_arr, c_arr, k_arr = (_as_count_array(name, v) for name, v in (("n", n), ("c", c), ("k", k)))
    n_arr, c_arr, k_arr = np.broadcast_arrays(n_arr, c_arr, k_arr)
    for name, arr, bad, allowed in (
            ("n", n_arr, n_arr < 1, "an int >= 1"),
            ("c", c_arr, (c_arr < 0) | (c_arr > n_arr), "an int with 0 <= c <= n"),
            ("k", k_arr, (k_arr < 1) | (k_arr > n_arr), "an int with 1 <= k <= n")):
        if bad.any():
            i = np.flatnonzero(bad.ravel())[0]
            fail(name, arr.ravel()[i], f"{allowed} (got n={_show(n_arr.ravel()[i])})")
    if n_arr.ndim == 0:
        return _pass_at_k_one(int(n_arr), int(c_arr), int(k_arr))
    return np.vectorize(_pass_at_k_one, otypes=[float])(n_arr, c_arr, k_arr)


# ----------------------------------------------------------------------------------------------------
# selection rules, vectorised over many subsets of one question's pool


def _encode(answers) -> np.ndarray:
    """Integer codes 0..K-1 for the distinct answers, -1 for a missing one (None, NaN, pandas NA)."""
    if isinstance(answers, (pd.Series, pd.Index)):
        answers = answers.array
    if not isinstance(answers, (np.ndarray, pd.api.extensions.ExtensionArray)):
        # dtype=object keeps tuples and other hashables as single answers
        answers = pd.Series(list(answers), dtype=object).array
    if answers.ndim != 1:
        fail("answers.shape", answers.shape, "a 1-D array")
    codes, _ = pd.factorize(answers, use_na_sentinel=True)
    return codes.astype(np.int64)


def _compact(codes: np.ndarray) -> np.ndarray:
    """Renumber the codes of one question's slice of a larger pool as 0..K-1 (missing stays -1).

    Numbered by first appearance within the slice, exactly as `_encode` on the question alone would:
    the numbering decides which random key breaks which tie, so it must not depend on other questions.
    """
    out = np.full(len(codes), -1, dtype=np.int64)
    valid = codes >= 0
    out[valid] = pd.factorize(codes[valid])[0]
    return out


@dataclass(frozen=True)
class _Pool:
    """One question's samples in the form the rules work on."""
    codes: np.ndarray           # (n,) answer code per sample, -1 = missing
    correct: np.ndarray         # (n,) bool
    answer_correct: np.ndarray  # (K,) bool: correctness of each distinct answer
    scores: np.ndarray | None   # (n,) float, NaN allowed only for missing answers

    @property
    def num_answers(self) -> int:
        return len(self.answer_correct)


def _make_pool(codes: np.ndarray, correct, scores) -> _Pool:
    correct = _as_bool_array("correct", correct, len(codes))
    valid = codes >= 0
    answer_correct = np.zeros(codes.max(initial=-1) + 1, dtype=bool)
    answer_correct[codes[valid]] = correct[valid]
    # Grading is by answer, so disagreement here means `correct` is misaligned with `answers`.
    if not (answer_correct[codes[valid]] == correct[valid]).all():
        fail("correct", "<differs between samples with the same answer>",
              "the same correctness for all samples that share an answer")
    return _Pool(codes, correct, answer_correct, None if scores is None else _as_scores("scores", scores, codes))


def _per_answer_sum(codes: np.ndarray, num_answers: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(S, K) count (or weight sum) of each answer in each of S subsets; missing answers are dropped."""
    s = codes.shape[0]
    # shift by one so missing answers (-1) land in a column 0 that is then thrown away
    flat = (np.arange(s)[:, None] * (num_answers + 1) + codes + 1).ravel()
    sums = np.bincount(flat, None if weights is None else weights.ravel(), minlength=s * (num_answers + 1))
    return sums.reshape(s, num_answers + 1)[:, 1:]


def _pick_max(values: np.ndarray, eligible: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per row, a uniformly random column among the eligible ones with the largest value.

    Returns (column index per row, whether the row had any eligible column at all).
    """
    masked = np.where(eligible, values, -np.inf)
    tied = eligible & (masked == masked.max(axis=1, keepdims=True))
    # the largest of iid uniform keys is equally likely to sit on any of the tied columns
    key = np.where(tied, rng.random(values.shape), -1.0)
    return key.argmax(axis=1), eligible.any(axis=1)


def _majority_batch(pool: _Pool, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if pool.num_answers == 0:
        return np.zeros(len(idx), dtype=bool)
    counts = _per_answer_sum(pool.codes[idx], pool.num_answers)
    winner, has_answer = _pick_max(counts, counts > 0, rng)
    return pool.answer_correct[winner] & has_answer


def _best_of_n_batch(pool: _Pool, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if pool.num_answers == 0:
        return np.zeros(len(idx), dtype=bool)
    column, has_answer = _pick_max(pool.scores[idx], pool.codes[idx] >= 0, rng)
    return pool.correct[idx[np.arange(len(idx)), column]] & has_answer


def _best_of_n_weighted_batch(pool: _Pool, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if pool.num_answers == 0:
        return np.zeros(len(idx), dtype=bool)
    codes = pool.codes[idx]
    counts = _per_answer_sum(codes, pool.num_answers)
    # weights of missing answers go to the dropped column; zero them so a NaN score cannot leak anywhere
    sums = _per_answer_sum(codes, pool.num_answers, np.where(codes >= 0, pool.scores[idx], 0.0))
    # eligibility by count, not by sum: scores may be negative (e.g. logits)
    winner, has_answer = _pick_max(sums, counts > 0, rng)
    return pool.answer_correct[winner] & has_answer


_BATCH: dict[str, Callable[[_Pool, np.ndarray, np.random.Generator], np.ndarray]] = {
    "majority": _majority_batch,
    "best_of_n": _best_of_n_batch,
    "best_of_n_weighted": _best_of_n_weighted_batch,
}
_NEEDS_SCORES = {"majority": False, "best_of_n": True, "best_of_n_weighted": True}


def _prepare(rule: str, answers, correct, scores) -> _Pool:
    if _NEEDS_SCORES[rule] and scores is None:
        fail("scores", None, f"a float array of verifier scores (rule {rule!r} needs them)")
    codes = _encode(answers)
    return _make_pool(codes, correct, scores if _NEEDS_SCORES[rule] else None)


def _select_one(rule: str, answers, correct, scores, rng) -> bool:
    rng = _check_rng(rng)
    pool = _prepare(rule, answers, correct, scores)
    whole = np.arange(len(pool.codes))[None, :]
    return bool(_BATCH[rule](pool, whole, rng)[0])


def majority(answers, correct, scores, rng) -> bool:
    """Majority vote over one subset of samples.

    Args:
        answers: 1-D array of hashable answers; None / NaN / pandas NA marks a sample without an answer.
        correct: bool array aligned with `answers` (samples with the same answer share correctness).
        scores: ignored (accepted so that all rules share one signature); may be None.
        rng: numpy Generator that breaks ties between equally frequent answers uniformly at random.

    Returns:
        Whether the most frequent non-missing answer is correct (False if no sample has an answer).
    """
    return _select_one("majority", answers, correct, scores, rng)


def best_of_n(answers, correct, scores, rng) -> bool:
    """Best-of-N: the answer of the highest-scoring sample among those with an answer.

    Args:
        answers, correct: as in `majority`.
        scores: float array of verifier scores aligned with `answers` (NaN only where the answer is missing).
        rng: numpy Generator that breaks ties between equal top scores uniformly at random.

    Returns:
        Whether the selected sample is correct (False if no sample has an answer).
    """
    return _select_one("best_of_n", answers, correct, scores, rng)


def best_of_n_weighted(answers, correct, scores, rng) -> bool:
    """Weighted best-of-N: the answer whose samples' verifier scores add up to the most.

    Args:
        answers, correct, scores: as in `best_of_n`.
        rng: numpy Generator that breaks ties between equal score sums uniformly at random.

    Returns:
        Whether the selected answer is correct (False if no sample has an answer).
    """
    return _select_one("best_of_n_weighted", answers, correct, scores, rng)


def weighted_winner(answers, scores, rng) -> int | None:
    """Index of a sample that holds the best-of-N weighted answer (the one whose scores add up to the most; ties
    uniformly at random), or None when no sample has an answer. For selections in stages, e.g. within each
    revision chain before choosing across chains."""
    rng = _check_rng(rng)
    codes = _encode(answers)
    if codes.max(initial=-1) < 0:
        return None
    scores = _as_scores("scores", scores, codes)
    whole = codes[None, :]
    counts = _per_answer_sum(whole, codes.max() + 1)
    sums = _per_answer_sum(whole, codes.max() + 1, np.where(whole >= 0, scores[None, :], 0.0))
    winner, _ = _pick_max(sums, counts > 0, rng)
    return int(np.flatnonzero(codes == winner[0])[0])


RULES: dict[str, Callable[..., bool]] = {
    "majority": majority,
    "best_of_n": best_of_n,
    "best_of_n_weighted": best_of_n_weighted,
}


def select(rule: str, answers, correct, scores, rng) -> bool:
    """Apply the selection rule named `rule` (a key of `RULES`) to one subset of samples.

    Returns:
        Whether the selected final answer is correct.
    """
    return RULES[_check_rule(rule)](answers, correct, scores, rng)


# ----------------------------------------------------------------------------------------------------
# expected accuracy at a budget, and curves over many questions


def _accuracies(pool: _Pool, budgets: list[int], rule: str, num_subsets: int,
                rng: np.random.Generator) -> list[float]:
    n = len(pool.codes)
    # One random permutation per subset; its first N entries are a uniform N-subset drawn without
    # replacement. Sharing them across budgets (common random numbers) makes a curve smoother than
    # drawing each budget afresh, and costs one shuffle per question.
    perms = rng.permuted(np.broadcast_to(np.arange(n), (num_subsets, n)), axis=1)
    # At N = 1 every rule returns the one sample, so its expected accuracy is the pool's pass@1 exactly;
    # using it removes Monte Carlo noise where curves start (and keeps pass@1 >= majority@1 exact).
    exact1 = float(np.mean(pool.correct & (pool.codes >= 0)))  # a missing answer is never correct
    return [exact1 if b == 1 else float(_BATCH[rule](pool, perms[:, :b], rng).mean()) for b in budgets]


def expected_accuracy(answers, correct, scores, budget: int, rule: str, num_subsets: int,
                      rng: np.random.Generator) -> float:
    """Expected accuracy of `rule` at budget N for one question, from its pool of n >= N samples.

    Averages the rule's correctness over `num_subsets` random N-subsets drawn without replacement
    (each with its own tie-breaking draw). With N == n every subset is the whole pool and the average
    is over tie-breaking only.

    Args:
        answers, correct, scores: the question's whole pool, as in `majority` / `best_of_n`.
        budget: N, an int in [1, n].
        rule: a key of `RULES`.
        num_subsets: number of random subsets to average over (int >= 1).
        rng: numpy Generator for the subsets and the tie-breaking.

    Returns:
        The estimated accuracy in [0, 1].
    """
    rule = _check_rule(rule)
    rng = _check_rng(rng)
    num_subsets = _check_int("num_subsets", num_subsets)
    pool = _prepare(rule, answers, correct, scores)
    n = len(pool.codes)
    budget = _check_int("budget", budget, 1, n, f" (the pool has {n} samples)")
    return _accuracies(pool, [budget], rule, num_subsets, rng)[0]


def _question_rng(seed: int, qid) -> np.random.Generator:
    """A generator of its own per question, from the seed and the qid itself (not its position), so a
    question's estimate depends neither on the order of the pool nor on which other questions it holds."""
    digest = hashlib.sha256(str(qid).encode()).digest()
    return np.random.default_rng(np.random.SeedSequence([seed, int.from_bytes(digest[:8], "little")]))


def _check_frame(name: str, df, columns: list[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        fail(name, type(df).__name__, f"a pandas DataFrame with columns {columns}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        fail(f"{name}.columns", list(df.columns), f"columns {columns} (missing {missing})")
    # groupby would silently drop rows without a qid
    if "qid" in columns and df["qid"].isna().any():
        fail(f"{name}.qid", "<missing>", "a qid on every row")


def accuracy_curve(pool: pd.DataFrame, budgets, rule: str, num_subsets: int = 100, seed: int = 0,
                   score_col: str = "score") -> pd.DataFrame:
    """Per question, the expected accuracy of `rule` at each budget (see `expected_accuracy`).

    Args:
        pool: one row per sample with columns qid, answer (nullable Int64 or object; missing = no answer),
            correct (bool) and, for the verifier rules, `score_col`.
        budgets: the budgets N; each must be <= every question's number of samples.
        rule: a key of `RULES`.
        num_subsets: random subsets per (question, budget).
        seed: int >= 0; the same seed gives the same output, whatever the order of the questions.
        score_col: the column holding verifier scores.

    Returns:
        DataFrame with columns qid, budget, accuracy: one row per (qid, budget), sorted by qid then budget order.
    """
    rule = _check_rule(rule)
    budgets = _check_budgets(budgets)
    num_subsets = _check_int("num_subsets", num_subsets)
    seed = _check_int("seed", seed, lo=0)
    if not isinstance(score_col, str):
        fail("score_col", score_col, "a column name (str)")
    _check_frame("pool", pool, ["qid", "answer", "correct"] + ([score_col] if _NEEDS_SCORES[rule] else []))

    codes = _encode(pool["answer"])  # once for the whole pool; each question renumbers its slice
    correct = _as_bool_array("correct", pool["correct"], len(pool))
    scores = (_as_scores(score_col, pool[score_col], codes) if _NEEDS_SCORES[rule] else None)

    qids, accuracies = [], []
    for qid, rows in pool.groupby("qid", sort=True).indices.items():
        n = len(rows)
        for b in budgets:
            _check_int("budget", b, 1, n, f" (question {_show(qid)!r} has {n} samples)")
        question = _make_pool(_compact(codes[rows]), correct[rows], None if scores is None else scores[rows])
        qids += [qid] * len(budgets)
        accuracies += _accuracies(question, budgets, rule, num_subsets, _question_rng(seed, qid))
    return pd.DataFrame({"qid": qids, "budget": budgets * (len(qids) // len(budgets)), "accuracy": accuracies})


def pass_at_k_curve(pool: pd.DataFrame, budgets) -> pd.DataFrame:
    """Per question, the unbiased pass@N at each budget (the oracle: is any of N samples correct?).

    Args:
        pool: one row per sample with columns qid and correct (bool).
        budgets: the budgets N; each must be <= every question's number of samples.

    Returns:
        DataFrame with columns qid, budget, accuracy, sorted by qid then budget order.
    """
    budgets = _check_budgets(budgets)
    _check_frame("pool", pool, ["qid", "correct"])
    correct = pd.Series(_as_bool_array("correct", pool["correct"], len(pool)), index=pool.index)
    by_question = correct.groupby(pool["qid"], sort=True)
    n, c = by_question.size(), by_question.sum()
    for b in budgets:
        _check_int("budget", b, 1, int(n.min()), f" (question {_show(n.idxmin())!r} has {n.min()} samples)")
    acc = pass_at_k(n.to_numpy()[:, None], c.to_numpy()[:, None], np.array(budgets)[None, :])
    return pd.DataFrame({"qid": np.repeat(n.index.to_numpy(), len(budgets)),
                         "budget": budgets * len(n), "accuracy": acc.ravel()})


# ----------------------------------------------------------------------------------------------------
# confidence bands


def bootstrap_ci(per_question_values, confidence: float = 0.95, n_resamples: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean over questions (percentile method, scipy.stats.bootstrap).

    Percentile rather than BCa: BCa's jackknife acceleration turns NaN when nearly all questions
    share one value, which is common for per-question accuracies at large budgets.

    Args:
        per_question_values: 1-D array of finite values, one per question.
        confidence: confidence level in (0, 1).
        n_resamples: number of bootstrap resamples (int >= 1).
        seed: seed of the resampling generator; the same seed gives the same interval.

    Returns:
        (low, high). If all values are equal (including a single question) the interval is (v, v).
    """
    values = np.asarray(per_question_values, dtype=float)
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        fail("per_question_values", values.tolist()[:5], "a non-empty 1-D array of finite numbers")
    if not (isinstance(confidence, (float, int, np.number)) and 0 < confidence < 1):
        fail("confidence", confidence, "a float in (0, 1)")
    n_resamples = _check_int("n_resamples", n_resamples)
    seed = _check_int("seed", seed, lo=0)
    if values.min() == values.max():  # every resample has the same mean; scipy would warn and give NaN
        return float(values[0]), float(values[0])
    res = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", **{_BOOTSTRAP_RNG_KW: np.random.default_rng(seed)})
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def curve_summary(curve_df: pd.DataFrame, confidence: float = 0.95, seed: int = 0,
                  n_resamples: int = 1000) -> pd.DataFrame:
    """Mean accuracy over questions per budget, with a bootstrap band (see `bootstrap_ci`).

    Args:
        curve_df: output of `accuracy_curve` or `pass_at_k_curve` (columns budget, accuracy).
        confidence, seed, n_resamples: as in `bootstrap_ci`.

    Returns:
        DataFrame with columns budget, accuracy, low, high; one row per budget, in increasing budget.
    """
    _check_frame("curve_df", curve_df, ["budget", "accuracy"])
    rows = []
    for budget, acc in curve_df.groupby("budget", sort=True)["accuracy"]:
        low, high = bootstrap_ci(acc.to_numpy(), confidence, n_resamples, seed)
        rows.append((budget, float(acc.mean()), low, high))
    return pd.DataFrame(rows, columns=["budget", "accuracy", "low", "high"])
