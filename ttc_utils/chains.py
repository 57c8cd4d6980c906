"""Revision chains (paper §6.2): sampling them, cached, and selecting an answer from S sequential x P parallel.

A chain is a sequence of attempts at one question; attempt t sees the `context` most recent attempts before it
(`revisions.chain_context`). One pool of chains of possibly different lengths serves every (S, P) at once: the
configuration with S sequential attempts and P parallel chains reads the first S attempts of the first P chains, so
chain c only needs to be as long as the longest S whose P exceeds c (`pool_lengths`), and the configurations of
one question share their samples (paired comparisons).

    lengths = pool_lengths([(1, 8), (2, 4), (4, 2), (8, 1)], min_chains=4, min_length=64)   # [(S, P), ...]
    chains = sample_chains(cache, revision_spec, task, problems, lengths, params, seed=0)   # qid, chain, step, ...
    control = control_chains(cache, revision_spec, task, problems, chains, [2, 4, 8], 4, params, seed=0)
    acc = chain_accuracy(chains, sequential=8, parallel=16, rule="best_of_n_weighted", score_col="score", seed=0)
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from .cache import Cache, content_key
from .checks import check, check_choice, check_int
from .estimators import select, weighted_winner
from .policy import SamplingParams, derive_seed
from .registry import Lazy, kept_policy
from .revisions import MAX_ATTEMPTS, chain_context
from .sampling import grade_samples, question_chunks

CHAIN_RULES = ("majority", "best_of_n_weighted")


def pool_lengths(shapes: list[tuple[int, int]], min_chains: int = 0, min_length: int = 0) -> list[int]:
    """Length of each chain of a pool that serves every (S, P) in `shapes`, plus `min_chains` chains of at least
    `min_length` attempts (e.g. for pass@1 at each revision step)."""
    chains = max([p for _, p in shapes] + [min_chains])
    return [max([s for s, p in shapes if p > c] + ([min_length] if c < min_chains else []) + [0])
            for c in range(chains)]


def _chains_key(policy, task, problems, lengths, params, seed, context, questions_per_chunk, batch_size) -> dict:
    return {"policy": policy.key(), "task": task.key, "questions": content_key([p.qid for p in problems]),
            "sampling": asdict(replace(params, n=1)), "lengths": lengths, "context": context, "seed": seed,
            "questions_per_chunk": questions_per_chunk, "batch_size": batch_size}


def chains_cached(cache: Cache, policy, task, problems: list, lengths: list[int], params: SamplingParams, seed: int,
                  context: int = MAX_ATTEMPTS, questions_per_chunk: int = 128, batch_size: int = 512) -> bool:
    """Whether the cache holds every chunk of `sample_chains` with these arguments."""
    key = _chains_key(policy, task, problems, lengths, params, seed, context, questions_per_chunk, batch_size)
    return not cache.missing("chains", key, len(question_chunks(problems, questions_per_chunk)))


def sample_chains(cache: Cache, policy, task, problems: list, lengths: list[int], params: SamplingParams, seed: int,
                  context: int = MAX_ATTEMPTS, questions_per_chunk: int = 128, batch_size: int = 512,
                  progress: bool = True) -> pd.DataFrame:
    """Chain c of every question gets `lengths[c]` attempts by the `ModelSpec` `policy`; one row per attempt: qid,
    the task's features, chain, step (1-based), text, num_tokens, prompt_tokens, finish_reason, answer, correct,
    seed. Every step of a chunk of questions is one batched call over all its live chains; chunks are cached, so
    a killed run resumes at its last unfinished chunk."""
    check(isinstance(lengths, list) and len(lengths) > 0 and all(isinstance(n, int) and n >= 0 for n in lengths),
          "lengths", lengths, "a non-empty list of ints >= 0 (attempts per chain)")
    check_int("context", context)
    # deep steps have few live chains per question, so a chunk holds many questions: a call's cost is mostly per
    # token, not per sequence, on a small model
    chunks = question_chunks(problems, questions_per_chunk)
    one = replace(params, n=1)
    key = _chains_key(policy, task, problems, lengths, params, seed, context, questions_per_chunk, batch_size)
    model = Lazy(lambda: kept_policy(policy, batch_size=batch_size, progress=False))

    def compute(i: int) -> pd.DataFrame:
        chunk, frames = chunks[i], []
        history: dict[tuple[int, int], list[str]] = {}
        for t in range(max(lengths)):
            live = [(q, c) for q in range(len(chunk)) for c, n in enumerate(lengths) if n > t]
            prompts = [task.prompt(chunk[q], chain_context(history.get((q, c), []), context)) for q, c in live]
            # the shared-prefill sampler: its decode loop retires finished attempts (2.4x `sample` on 400 prompts of
            # ~230 tokens whose attempts are 38 tokens long on average and 77 at most)
            out = model.get().sample_shared(prompts, one, seed=derive_seed(seed, "chunk", i, "step", t))
            graded = grade_samples(task, out.assign(prompt_index=range(len(live))), [chunk[q] for q, _ in live])
            for (q, c), text in zip(live, out.text):
                history.setdefault((q, c), []).append(text)
            frames.append(graded.drop(columns="sample_index").assign(chain=[c for _, c in live], step=t + 1))
        return pd.concat(frames, ignore_index=True).assign(seed=seed)

    return cache.chunked("chains", key, len(chunks), compute, desc=f"revision chains ({len(problems)} questions)",
                         progress=progress)


def control_chains(cache: Cache, policy, task, problems: list, chains: pd.DataFrame, steps: list[int],
                   chains_per_question: int, params: SamplingParams, seed: int, context: int = MAX_ATTEMPTS,
                   batch_size: int = 512) -> pd.DataFrame:
    """A control for pass@1 per revision step: for question i of `problems`, chain c < `chains_per_question` and step t
    in `steps`, one attempt sampled after the attempts that chain c of question i+1 (the next one, cyclically) made
    before its step t (its `context` most recent), in place of the chain's own. As many attempts in context as the
    chain's own step-t attempt saw, none of them at this question: the chain's step t against this compares its own
    attempts with as many foreign ones, and step 1 against this shows what foreign attempts do by themselves (they
    may distract: then the first difference is no measure of reading).
    `chains`: one sampling seed's table of `sample_chains`. Rows as `sample_chains`'s (step: the step stood in for);
    none with fewer than two questions. Cached."""
    check(isinstance(steps, list) and all(isinstance(t, int) and t >= 2 for t in steps), "steps", steps,
          "a list of revision steps >= 2 (step 1 has no previous attempt to swap)")
    check_int("chains_per_question", chains_per_question)
    check_int("context", context)
    if len(problems) < 2:
        return pd.DataFrame(columns=list(chains.columns))
    part = chains[chains.chain < chains_per_question]
    attempts = {k: g.sort_values("step").text.tolist() for k, g in part.groupby(["qid", "chain"])}
    jobs = [(i, c, t) for i in range(len(problems)) for c in range(chains_per_question) for t in steps]
    other = {i: problems[(i + 1) % len(problems)].qid for i in range(len(problems))}
    missing = [(other[i], c, t) for i, c, t in jobs if len(attempts.get((other[i], c), [])) < t - 1]
    check(not missing, "chains", f"{len(missing)} chains shorter than the control steps need (e.g. {missing[:1]})",
          f"chains with at least {max(steps) - 1} attempts in each of the first {chains_per_question} chains")
    contexts = [chain_context(attempts[(other[i], c)][:t - 1], context) for i, c, t in jobs]
    key = {"policy": policy.key(), "task": task.key, "questions": content_key([p.qid for p in problems]),
           "contexts": content_key(contexts), "sampling": asdict(replace(params, n=1)), "seed": seed,
           "batch_size": batch_size}

    def compute() -> pd.DataFrame:
        prompts = [task.prompt(problems[i], ctx) for (i, _, _), ctx in zip(jobs, contexts)]
        model = kept_policy(policy, batch_size=batch_size, progress=False)
        out = model.sample_shared(prompts, replace(params, n=1), seed=derive_seed(seed, "control"))
        graded = grade_samples(task, out, [problems[i] for i, _, _ in jobs])
        return graded.drop(columns="sample_index").assign(chain=[c for _, c, _ in jobs], step=[t for _, _, t in jobs],
                                                         seed=seed)

    return cache.chunked("control-chains", key, 1, lambda _: compute(), progress=False)  # seconds: no bar


def chain_accuracy(chains: pd.DataFrame, sequential: int, parallel: int, rule: str, seed: int,
                   score_col: str | None = None) -> pd.DataFrame:
    """Per question, whether the answer selected from the first `sequential` attempts of the first `parallel` chains
    is correct. "majority": one vote per attempt over all S·P. "best_of_n_weighted" (hierarchical, the paper's):
    within each chain the best-of-N weighted answer, then best-of-N weighted across the chains' winners, each
    winner weighted by the highest score its answer got in its chain. Columns: qid, correct, generations (S·P)."""
    check_choice("rule", rule, CHAIN_RULES)
    check_int("sequential", sequential)
    check_int("parallel", parallel)
    check(rule == "majority" or (score_col is not None and score_col in chains), "score_col", score_col,
          f"a column of verifier scores (rule {rule!r} needs one)")
    part = chains[(chains.step <= sequential) & (chains.chain < parallel)]
    have = part.groupby("qid").size()
    short = have[have < sequential * parallel]
    check(short.empty, "chains", f"{len(short)} questions with fewer than {sequential * parallel} attempts",
          f"a pool with {parallel} chains of >= {sequential} attempts (see pool_lengths)")
    # numpy slices instead of pandas groups (the groups cost 3.6 of notebook 03's minutes); each selection sees the
    # arrays the groups gave it, in the same order, so every random tie-break draws the same numbers
    qcodes, qids = pd.factorize(part.qid)  # questions in order of first appearance
    position = np.arange(len(part))
    if rule == "majority":
        order = np.lexsort((position, qcodes))  # a question's attempts in table order
    else:
        order = np.lexsort((position, part.chain.to_numpy(), qcodes))  # then its chains in order
        scores = part[score_col].to_numpy(dtype=float, na_value=np.nan)[order]
        chain = part.chain.to_numpy()[order]
    answers = part.answer.to_numpy(dtype=object, na_value=None)[order]
    correct, q = part.correct.to_numpy(dtype=bool)[order], qcodes[order]
    rows = []
    for a, b in _runs(q):
        qid = qids[q[a]]
        rng = np.random.default_rng(derive_seed(seed, "chains", qid, sequential, parallel, rule))
        if rule == "majority":
            ok = select("majority", answers[a:b], correct[a:b], None, rng)
        else:
            winners = []
            for ca, cb in _runs(chain[a:b], offset=a):
                w = weighted_winner(answers[ca:cb], scores[ca:cb], rng)
                if w is not None:
                    same = answers[ca:cb] == answers[ca + w]
                    winners.append((answers[ca + w], bool(correct[ca + w]), float(scores[ca:cb][same].max())))
            ok = bool(winners) and select("best_of_n_weighted", pd.Series([w[0] for w in winners], dtype=object),
                                          np.array([w[1] for w in winners]), np.array([w[2] for w in winners]), rng)
        rows.append((qid, bool(ok), sequential * parallel))
    return pd.DataFrame(rows, columns=["qid", "correct", "generations"])


def _runs(keys: np.ndarray, offset: int = 0) -> list[tuple[int, int]]:
    """(start, end) of each run of equal consecutive values of `keys`, shifted by `offset`."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(keys)]
    return [(int(a) + offset, int(b) + offset) for a, b in zip(starts, ends)]


def revise_until_confident(chains: pd.DataFrame, score_col: str, threshold: float, sequential: int, parallel: int,
                           seed: int) -> pd.DataFrame:
    """"Revise only when the verifier doubts": each of the first `parallel` chains stops at its first attempt that
    scores >= `threshold` (or after `sequential` attempts); best-of-N weighted then picks across the chains' last
    attempts. Columns: qid, correct, generations (attempts actually made, <= S·P)."""
    check_int("sequential", sequential)
    check_int("parallel", parallel)
    check(score_col in chains, "score_col", score_col, "a column of verifier scores")
    part = chains[(chains.step <= sequential) & (chains.chain < parallel)].sort_values(["qid", "chain", "step"])
    rows = []
    for qid, q in part.groupby("qid", sort=False):
        last, used = [], 0
        for _, c in q.groupby("chain", sort=True):
            sure = np.flatnonzero(c[score_col].to_numpy() >= threshold)
            stop = int(sure[0]) if len(sure) else len(c) - 1
            used += stop + 1
            last.append(c.iloc[stop])
        rng = np.random.default_rng(derive_seed(seed, "confident", qid, sequential, parallel, threshold))
        ok = select("best_of_n_weighted", pd.Series([r.answer for r in last], dtype=object),
                    np.array([bool(r.correct) for r in last]), np.array([float(r[score_col]) for r in last]), rng)
        rows.append((qid, bool(ok), used))
    return pd.DataFrame(rows, columns=["qid", "correct", "generations"])
