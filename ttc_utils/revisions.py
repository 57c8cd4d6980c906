"""Revision trajectories and chains (paper §6): the revision model's training data and the shape of its chains.

Training data, the paper's recipe: per training question, samples of the base policy at a higher temperature;
answers without a parsable final answer are dropped; every correct answer is the target of one trajectory whose
context holds k ~ Uniform{0..max_attempts} wrong answers of the same question (k capped by how many it has), the
last of them the wrong answer closest to the target by character edit distance (so the model learns to fix a
near miss), the others drawn at random.

    traj = trajectories(task, problems, samples, max_attempts=4, seed=0)   # qid, attempts, target, k
    text = task.prompt(problem, traj.attempts[0]) + traj.target[0]        # one training sequence

Chains: a budget of N generations runs P = N / S chains of S sequential attempts each (`chain_shape`); every
attempt sees the `context` most recent attempts of its chain (`chain_context`). The revision ORM learns from the
revision model's own chains, reading each attempt after the attempts it saw (`orm_labels`; `history=False` for the
ablation that reads the attempt alone).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein

from .checks import check, check_int
from .policy import derive_seed

MAX_ATTEMPTS = 4  # the paper's most previous attempts in a revision model's context
TRAJECTORY_COLUMNS = ["qid", "attempts", "target", "k"]


def closest(target: str, candidates: list[str]) -> int:
    """Index of the candidate with the smallest character edit distance to `target` (the first on ties)."""
    check(len(candidates) > 0, "candidates", candidates, "at least one string")
    distances = [Levenshtein.distance(target, c) for c in candidates]
    return min(range(len(distances)), key=distances.__getitem__)  # the first smallest, as np.argmin


def trajectories(task, problems: list, samples: pd.DataFrame, max_attempts: int = MAX_ATTEMPTS,
                 seed: int = 0) -> pd.DataFrame:
    """One row per correct sample of a training question (columns `TRAJECTORY_COLUMNS`): the wrong attempts to put
    in context before it, oldest first, and the target (the correct sample's text).

    `samples` are graded samples (qid, sample_index, text, answer, correct) of `problems`; every problem must be in
    the task's training split, so no test question can reach the revision model's training data.
    """
    check_int("max_attempts", max_attempts, lo=0)
    check(max_attempts <= MAX_ATTEMPTS, "max_attempts", max_attempts, f"an int in [0, {MAX_ATTEMPTS}]")
    test = [p.qid for p in problems if task.split_of(p) != "train"]
    check(not test, "problems", test[:3], "training-split questions only (these are in the test split)")
    known = {p.qid for p in problems}
    parsed = samples[samples.answer.notna() & samples.qid.isin(known)]
    # per question (in order of first appearance) its samples in sample order, from plain lists: per-group pandas
    # indexing cost more than the edit distances
    by_qid: dict = {}
    for qid, index, text, correct in zip(parsed.qid.tolist(), parsed.sample_index.tolist(), parsed.text.tolist(),
                                         parsed.correct.astype(bool).tolist()):
        by_qid.setdefault(qid, []).append((index, text, correct))
    rows = []
    for qid, group in by_qid.items():
        group.sort(key=lambda row: row[0])
        right, wrong = [t for _, t, c in group if c], [t for _, t, c in group if not c]
        rng = np.random.default_rng(derive_seed(seed, "trajectory", qid))
        for target in right:
            k = min(int(rng.integers(0, max_attempts + 1)), len(wrong))
            attempts = []
            if k:
                last = closest(target, wrong)
                others = [i for i in range(len(wrong)) if i != last]
                attempts = [wrong[i] for i in rng.choice(others, size=k - 1, replace=False)] + [wrong[last]]
            rows.append((qid, attempts, target, k))
    return pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS)


def chain_context(previous: list[str], context: int = MAX_ATTEMPTS) -> list[str]:
    """The attempts a revision sees: the `context` most recent of its chain, oldest first."""
    check_int("context", context, lo=1)
    return list(previous[-context:])


def chain_shape(budget: int, sequential: int) -> tuple[int, int]:
    """(S, P): `sequential` attempts per chain and budget / sequential chains in parallel, S·P = budget exactly."""
    check_int("budget", budget)
    check_int("sequential", sequential)
    check(budget % sequential == 0, "sequential", sequential, f"a divisor of the budget {budget}")
    return sequential, budget // sequential


def chain_prompts(task, problems: list, chains: pd.DataFrame, context: int = MAX_ATTEMPTS) -> list[str]:
    """Per row of `chains` (qid, chain, step, text), in its order, the prompt that attempt was sampled from: the
    question, then the `context` attempts before it in its chain."""
    by_qid = {p.qid: p for p in problems}
    seeds = chains.seed.tolist() if "seed" in chains else [0] * len(chains)  # chains of several samplings
    # plain lists: iterating a pandas string column element by element costs more than the prompts themselves
    qids, chain_ids, steps = chains.qid.tolist(), chains.chain.tolist(), chains.step.tolist()
    text = dict(zip(zip(seeds, qids, chain_ids, steps), chains.text.tolist()))
    return [task.prompt(by_qid[q], [text[(r, q, c, s)] for s in range(max(1, t - context), t)])
            for r, q, c, t in zip(seeds, qids, chain_ids, steps)]


def orm_labels(task, problems: list, chains: pd.DataFrame, context: int = MAX_ATTEMPTS, history: bool = True
               ) -> pd.DataFrame:
    """Training rows for an outcome verifier over chains (qid, chain, step, text, answer, correct): qid, prompt (the
    question and, with `history`, the `context` attempts before this one), completion (cut after its answer step),
    correct, and targets (one per step, the final correctness: what `verifier_training` reads for an ORM). Attempts
    without a parsable answer are left out, as in the PRM's labels."""
    by_qid = {p.qid: p for p in problems}
    prompts = (chain_prompts(task, problems, chains, context) if history
               else [task.prompt(by_qid[q]) for q in chains.qid])
    rows = []
    for qid, prompt, text, answer, correct in zip(chains.qid, prompts, chains.text, chains.answer, chains.correct):
        if answer is None or pd.isna(answer):
            continue
        completion = task.through_answer(text)
        rows.append((qid, prompt, completion, bool(correct), [float(correct)] * len(task.split_steps(completion))))
    return pd.DataFrame(rows, columns=["qid", "prompt", "completion", "correct", "targets"])


def _by_chain(chains: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`chains` in attempt order within each chain, and the keys of a chain (seed, when present, qid, chain)."""
    keys = ["seed", "qid", "chain"] if "seed" in chains else ["qid", "chain"]
    return chains.sort_values(keys + ["step"]), keys


def context_effect(chains: pd.DataFrame) -> pd.DataFrame:
    """Does a revision read its context? Per kind of previous attempt (correct / wrong), the accuracy of the attempts
    that followed one, next to the first attempts' accuracy on the same questions (each question weighted as often as
    it has such a follower). Equal columns mean the attempts are as good as fresh samples whatever came before.
    `chains`: qid, chain, step, correct (and seed for several samplings)."""
    c, keys = _by_chain(chains)
    previous = c.groupby(keys).correct.shift(1)
    first = c[c.step == 1].groupby(keys[:-1], as_index=False).correct.mean().rename(columns={"correct": "first"})
    follow = c[previous.notna()].assign(previous=previous[previous.notna()].astype(bool)).merge(first, on=keys[:-1])
    out = follow.groupby("previous").agg(attempts=("correct", "size"), accuracy=("correct", "mean"),
                                         first_attempt_accuracy=("first", "mean"))
    out.index = out.index.map({True: "after a correct attempt", False: "after a wrong attempt"})
    return out.rename_axis("previous attempt").reset_index()


def answer_repeats(chains: pd.DataFrame, samples: pd.DataFrame) -> dict[str, float]:
    """Does a revision avoid the wrong answer just before it? The share of attempts after a wrong attempt (with an
    answer) that give that same answer, next to the share expected of fresh samples: on each question, the chance
    that a sample from `samples` (the base policy's, e.g. notebook 01's pool) has the answer of a wrong sample drawn
    from the same pool, weighted by how often the question has such a follower in `chains`. Equal shares mean the
    previous answer is not read. `chains`: qid, chain, step, answer, correct (and seed); `samples`: qid, answer,
    correct."""
    c, keys = _by_chain(chains)
    grouped = c.groupby(keys)
    prev_answer, prev_correct = grouped.answer.shift(1), grouped.correct.shift(1)
    after = c[prev_correct.eq(False) & prev_answer.notna()]
    repeated = (after.answer == prev_answer[after.index]).to_numpy()
    expected = {}
    for qid, g in samples[samples.qid.isin(after.qid.unique())].groupby("qid"):  # isin is slow on long lists
        wrong = g.answer[~g.correct.astype(bool) & g.answer.notna()]
        share = g.answer.value_counts(normalize=True)
        expected[qid] = float(share[wrong].mean()) if len(wrong) else float("nan")
    fresh = after.qid.map(expected).to_numpy(dtype=float)
    return {"attempts after a wrong attempt": int(len(after)),
            "repeat its answer": float(repeated.mean()) if len(after) else float("nan"),
            "fresh samples would": float(np.nanmean(fresh)) if np.isfinite(fresh).any() else float("nan")}


def exclusion_bound(samples: pd.DataFrame, max_attempts: int = MAX_ATTEMPTS, draws: int = 200,
                    seed: int = 0) -> pd.DataFrame:
    """What reading the previous attempts' answers alone is worth: per number k of previous wrong attempts (0 to
    `max_attempts`), the mean pass@1 over questions of a policy that samples as `samples` do but never gives an
    answer already tried. The k attempts are drawn, with replacement, from the question's own wrong samples (`draws`
    times, seeded); a question without wrong samples keeps its pass@1. A revision model whose pass@1 after k wrong
    attempts stays at k = 0's leaves this on the table. `samples`: qid, answer (None when unparsable), correct."""
    check_int("max_attempts", max_attempts, lo=0)
    check_int("draws", draws)
    rng = np.random.default_rng([seed, 7])
    per_k: list[list[float]] = [[] for _ in range(max_attempts + 1)]
    for _, g in samples.groupby("qid", sort=True):
        correct = g.correct.to_numpy(dtype=bool)
        share = g.answer.value_counts(normalize=True, dropna=False).to_dict()
        wrong = g.answer[~correct & g.answer.notna()].tolist()  # an unparsable attempt names no answer to avoid
        codes, answers = pd.factorize(np.array(wrong, dtype=object))  # codes in order of first appearance
        answer_share = np.array([share[a] for a in answers] + [0.0])  # [-1]: the padding of a repeated answer
        pass1 = correct.mean()
        for k in range(max_attempts + 1):
            if k == 0 or not wrong or pass1 == 0:  # (nothing to gain; and no 0 / 0 when every answer is tried)
                per_k[k].append(pass1)
                continue
            # one draw of k attempts per call, as rng.choice(len(wrong), size=k) draws them (the same stream)
            tried = np.sort(codes[np.stack([rng.integers(0, len(wrong), size=k) for _ in range(draws)])], axis=1)
            tried[:, 1:][tried[:, 1:] == tried[:, :-1]] = -1  # each distinct answer counted once
            per_k[k].append(np.mean(pass1 / (1 - answer_share[tried].sum(axis=1))))
    return pd.DataFrame({"previous_wrong_attempts": range(max_attempts + 1),
                         "pass@1": [float(np.mean(v)) for v in per_k]})


def parting_pairs(samples: pd.DataFrame, per_question: int = 4, seed: int = 0) -> pd.DataFrame:
    """Pairs (qid, wrong, right, unrelated) for `parting_probs`: per question with both kinds of sample, `per_question`
    correct samples drawn at random, each with the wrong sample closest to it by edit distance (the trajectories' last
    attempt), so the two share a long start and part where the wrong one went wrong; `unrelated` is the wrong sample
    of the next question's pair, a context of the same form with nothing in it about this question (None with one
    question). `samples`: qid, text, answer, correct (graded samples, e.g. notebook 01's pool)."""
    check_int("per_question", per_question)
    rows = []
    for qid, g in samples[samples.answer.notna()].groupby("qid", sort=True):
        right, wrong = g.text[g.correct.astype(bool)].tolist(), g.text[~g.correct.astype(bool)].tolist()
        if not right or not wrong:
            continue
        rng = np.random.default_rng(derive_seed(seed, "parting", qid))
        for i in rng.integers(len(right), size=per_question):
            rows.append((qid, wrong[closest(right[i], wrong)], right[i]))
    pairs = pd.DataFrame(rows, columns=["qid", "wrong", "right"])
    other = np.roll(np.arange(len(pairs)), -per_question)  # rows come per_question to a question
    unrelated = pairs.wrong.to_numpy()[other] if pairs.qid.nunique() > 1 else [None] * len(pairs)
    return pairs.assign(unrelated=unrelated)


def parting_index(a, b) -> int | None:
    """The first position where sequences `a` and `b` (texts or token ids) differ; None where one starts the other."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def on_reference(task, problem, wrong: str, right: str) -> bool | None:
    """Is the right attempt still on the reference path through the step where it parts from the wrong one? None
    where the task has no per-step truth (MATH). A right final answer is no proof of a right step: in the world, a
    chain that went wrong lands on the right answer by luck (the guess rate), and where such an attempt parts from a
    wrong one, its token is a lucky slip rather than the right computation."""
    truth = task.step_truth(problem, right)
    if truth is None:
        return None
    part = parting_index(wrong, right)
    part = min(len(wrong), len(right)) if part is None else part
    ends = np.cumsum([len(s) for s in task.split_steps(right)])
    step = int(np.searchsorted(ends, part, side="right"))  # the step holding the right attempt's parting character
    return bool(truth[step]) if step < len(truth) else bool(all(truth))
