"""Cached, chunked, graded samples of a policy on a list of a task's problems.

A chunk is a block of questions; each is sampled with its own seed, written atomically, and skipped on a rerun.
The policy is loaded only when a chunk is missing, so a warm rerun never touches a model.

    table = sample_problems(cache, ModelSpec(path), task, problems, SamplingParams(n=64), seed=0)
"""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from .cache import Cache, content_key
from .checks import check, check_int, is_int
from .policy import SamplingParams, derive_seed
from .registry import Lazy, kept_policy


def question_chunks(items: list, per_chunk: int) -> list[list]:
    """`items` cut into consecutive chunks of `per_chunk` (the unit of caching and of resuming)."""
    return [items[i:i + per_chunk] for i in range(0, len(items), per_chunk)]


def check_shard(shard, num_shards) -> None:
    check_int("num_shards", num_shards)
    check(is_int(shard) and 0 <= shard < num_shards, "shard", shard, f"an int in [0, num_shards={num_shards})")


def shard_chunks(counts: list[int], shard: int, num_shards: int) -> list[list[int] | None]:
    """For jobs of `counts[j]` cached chunks each, the chunks of each job that shard `shard` computes (all of them,
    None, when unsharded). The jobs' chunks are dealt in order, one to each shard in turn, so shards get about equal
    shares of every kind of job (a notebook's cheap and costly settings alike)."""
    check_shard(shard, num_shards)
    if num_shards == 1:
        return [None] * len(counts)
    out, k = [], 0
    for n in counts:
        out.append([i for i in range(n) if (k + i) % num_shards == shard])
        k += n
    return out


def sample_problems(cache: Cache, policy, task, problems: list, params: SamplingParams, seed: int,
                    questions_per_chunk: int = 64, batch_size: int = 512, name: str = "samples",
                    progress: bool = True, shard: int = 0, num_shards: int = 1) -> pd.DataFrame:
    """One row per (question, sample): qid, the task's features (e.g. num_steps), sample_index, text,
    num_tokens, finish_reason, answer (the task's answer as a string, or None), correct, seed. Cached under a key
    of the policy spec, the questions and `params`.

    With `num_shards` > 1, only the chunks i with i % num_shards == shard are sampled and returned: shards
    run as separate jobs write the very chunks one unsharded run would, so merging their caches
    (`Cache.merge_from`) and calling again with num_shards=1 gives the same table without sampling.
    """
    check_shard(shard, num_shards)
    chunks = question_chunks(problems, questions_per_chunk)
    key = {"policy": policy.key(), "task": task.key, "questions": content_key([p.qid for p in problems]),
           "sampling": asdict(params), "seed": seed, "questions_per_chunk": questions_per_chunk,
           "batch_size": batch_size}
    # the stage's chunk bar is its one bar
    model = Lazy(lambda: kept_policy(policy, batch_size=batch_size, progress=False))

    def compute(i: int) -> pd.DataFrame:
        chunk = chunks[i]
        df = model.get().sample([task.prompt(p) for p in chunk], params, seed=derive_seed(seed, "chunk", i))
        return grade_samples(task, df, chunk).assign(seed=seed)

    only = shard_chunks([len(chunks)], shard, num_shards)[0]
    return cache.chunked(name, key, len(chunks), compute, desc=f"{name} ({len(problems)} questions)", only=only,
                         progress=progress)


def answer_text(answer) -> str | None:
    """How tables store an answer: its string (equal answers, equal strings), None for no answer."""
    return None if answer is None else str(answer)


def grade_samples(task, df: pd.DataFrame, problems: list) -> pd.DataFrame:
    """Attach question fields to a policy's samples (columns of `policy.SAMPLE_COLUMNS`) and grade them."""
    p = [problems[i] for i in df["prompt_index"]]
    features = pd.DataFrame([task.features(q) for q in p], index=range(len(p)))
    out = pd.DataFrame({"qid": [q.qid for q in p]})
    out = pd.concat([out, features], axis=1) if len(features.columns) else out
    return out.assign(
        sample_index=df["sample_index"].to_numpy(),
        text=df["text"].to_numpy(),
        num_tokens=df["num_tokens"].to_numpy(),
        prompt_tokens=df["prompt_tokens"].to_numpy(),
        finish_reason=df["finish_reason"].to_numpy(),
        answer=pd.array([answer_text(task.extract_answer(t)) for t in df["text"]], dtype=object),
        correct=[task.is_correct(q, t) for q, t in zip(p, df["text"])],
    )
