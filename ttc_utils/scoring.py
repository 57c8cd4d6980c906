"""Verifier scores of a table of solutions, cached in chunks of questions: the input of every verifier-based curve.

    scores = score_solutions(cache, ModelSpec(prm_folder), task, problems, pool)   # qid, sample_index, last, ...
    reference = policy_logprobs(cache, ModelSpec(policy_path), task, problems, pool)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .aggregation import AGGREGATIONS, aggregate
from .cache import Cache, content_key
from .registry import Lazy, kept_verifier
from .sampling import question_chunks
from .value_head import likelihood_column, load_backbone, step_features
from .verifier import verifier_prompt


def _chunks_of(problems: list, samples: pd.DataFrame, questions_per_chunk: int):
    """(problems by qid, the samples' qids in problem order cut into chunks, a content key of the samples):
    the chunking shared by every cached per-sample table of this module."""
    by_qid = {p.qid: p for p in problems}
    qids = sorted(samples.qid.unique(), key=list(by_qid).index)
    samples_key = content_key({"qid": samples.qid.tolist(), "sample_index": samples.sample_index.tolist(),
                               "text": samples.text.tolist()})
    return by_qid, question_chunks(qids, questions_per_chunk), samples_key


def score_chunks(problems: list, samples: pd.DataFrame, questions_per_chunk: int = 64) -> int:
    """How many cached chunks `score_solutions` cuts `samples` into."""
    return len(_chunks_of(problems, samples, questions_per_chunk)[1])


def score_solutions(cache: Cache, verifier, task, problems: list, samples: pd.DataFrame, name: str = "scores",
                    questions_per_chunk: int = 64, batch_size: int = 512, progress: bool = True,
                    only: list[int] | None = None) -> pd.DataFrame:
    """Per sample of `samples` (qid, sample_index, text): step_scores and every aggregation (last, min,
    prod), plus the verifier tokens spent on it. `verifier` is a `ModelSpec`. Cached in chunks of questions.
    The verifier reads each sample after its question's prompt, or after its own `prompt` where `samples` has that
    column (a revision's previous attempts). With `only`, just those chunks are scored and returned (a shard's share).
    """
    by_qid, chunks, samples_key = _chunks_of(problems, samples, questions_per_chunk)
    own = "prompt" in samples
    key = {"verifier": verifier.key(), "task": task.key, "samples": samples_key,
           "questions_per_chunk": questions_per_chunk,
           **({"prompts": content_key(samples.prompt.tolist())} if own else {})}
    # the stage's chunk bar is its one bar
    model = Lazy(lambda: kept_verifier(verifier, batch_size=batch_size, progress=False))

    def compute(i: int) -> pd.DataFrame:
        part = samples[samples.qid.isin(set(chunks[i]))]
        steps = [task.split_steps(task.through_answer(t)) for t in part.text]
        prompts = part.prompt.tolist() if own else [verifier_prompt(model.get(), task, by_qid[q]) for q in part.qid]
        step_scores, tokens = model.get().score(prompts, steps)
        out = pd.DataFrame({"qid": part.qid.to_numpy(), "sample_index": part.sample_index.to_numpy(),
                            "step_scores": step_scores, "verifier_tokens": tokens})
        for how in AGGREGATIONS:
            out[how] = [aggregate(s, how) for s in step_scores]
        return out

    return cache.chunked(name, key, len(chunks), compute, desc=f"{name} ({samples.qid.nunique()} questions)",
                         progress=progress, only=only)


def policy_logprobs(cache: Cache, policy, task, problems: list, samples: pd.DataFrame,
                    questions_per_chunk: int = 64, batch_size: int = 512) -> pd.DataFrame:
    """A training-free reference verifier: the policy's own log-probability of each completion (summed over
    its tokens, and the least likely token). Per sample of `samples`: qid, sample_index, logprob_sum,
    logprob_min. It shows how much per-sample signal the policy's weights hold that a trained verifier
    could extract."""
    by_qid, chunks, samples_key = _chunks_of(problems, samples, questions_per_chunk)
    key = {"policy": policy.key(), "task": task.key, "samples": samples_key,
           "questions_per_chunk": questions_per_chunk}
    model = Lazy(lambda: load_backbone(policy.path, policy.device, policy.dtype, policy.revision))

    def compute(i: int) -> pd.DataFrame:
        lm, tokenizer = model.get()
        part = samples[samples.qid.isin(set(chunks[i]))]
        steps = [task.split_steps(task.through_answer(t)) for t in part.text]
        features, _ = step_features(lm, tokenizer, [task.prompt(by_qid[q]) for q in part.qid], steps, batch_size)
        last = [f[-1] if len(f) else None for f in features]  # running sums over every step: the whole completion
        return pd.DataFrame({
            "qid": part.qid.to_numpy(), "sample_index": part.sample_index.to_numpy(),
            "logprob_sum": [-np.inf if r is None else float(r[likelihood_column("run_sum")]) for r in last],
            "logprob_min": [-np.inf if r is None else float(r[likelihood_column("run_min")]) for r in last]})

    return cache.chunked("logprobs", key, len(chunks), compute, desc="policy log-probabilities")
