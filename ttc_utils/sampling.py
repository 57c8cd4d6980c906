"""Cached, chunked, graded samples of a policy on a list of world problems.

A chunk is a block of questions; each is sampled with its own seed, written atomically, and skipped
on a rerun. The policy is loaded only when a chunk is missing, so a warm rerun never touches a model.

    table = sample_problems(cache, "path/to/policy", problems, SamplingParams(n=64), seed=0)
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from .cache import Cache, content_key
from .policy import SamplingParams, TransformersPolicy, derive_seed
from .world import Problem, extract_answer


def sample_problems(cache: Cache, policy_path: str, problems: list[Problem], params: SamplingParams, seed: int,
                    questions_per_chunk: int = 64, batch_size: int = 512, name: str = "samples",
                    progress: bool = True, shard: int = 0, num_shards: int = 1) -> pd.DataFrame:
    """One row per (question, sample): qid, num_steps, sample_index, text, num_tokens, finish_reason,
    answer (parsed, or <NA>), correct, seed. Cached under a key of the policy, the questions and `params`.

    With `num_shards` > 1, only the chunks i with i % num_shards == shard are sampled and returned: shards
    run as separate jobs write the very chunks one unsharded run would, so merging their caches
    (`Cache.merge_from`) and calling again with num_shards=1 gives the same table without sampling.
    """
    if not (isinstance(num_shards, int) and num_shards >= 1):
        raise ValueError(f"num_shards={num_shards!r} is not allowed: expected an int >= 1")
    if not (isinstance(shard, int) and 0 <= shard < num_shards):
        raise ValueError(f"shard={shard!r} is not allowed: expected an int in [0, num_shards={num_shards})")
    policy = None
    chunks = [problems[i:i + questions_per_chunk] for i in range(0, len(problems), questions_per_chunk)]
    key = {"policy": policy_key(policy_path), "questions": content_key([p.qid for p in problems]),
           "sampling": asdict(params), "seed": seed, "questions_per_chunk": questions_per_chunk,
           "batch_size": batch_size}

    def compute(i: int) -> pd.DataFrame:
        nonlocal policy
        if policy is None:
            policy = TransformersPolicy.from_pretrained(policy_path, batch_size=batch_size, progress=progress)
        chunk = chunks[i]
        df = policy.sample([p.prompt for p in chunk], params, seed=derive_seed(seed, "chunk", i))
        return grade_samples(df, chunk).assign(seed=seed)

    only = None if num_shards == 1 else [i for i in range(len(chunks)) if i % num_shards == shard]
    return cache.chunked(name, key, len(chunks), compute, desc=f"{name} ({len(problems)} questions)", only=only)


def policy_key(policy_path: str) -> str:
    """What names a policy in cache keys, independent of the working directory.

    A local folder: its name plus a hash of its config and weight-file sizes (two different checkpoints
    that happen to share a folder name do not collide). A hub id: the id itself.
    """
    path = Path(os.path.expanduser(str(policy_path)))
    if not path.is_dir():
        return str(policy_path)
    h = hashlib.sha256()
    if (path / "config.json").exists():
        h.update((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{path.resolve().name}-{h.hexdigest()[:8]}"


def grade_samples(df: pd.DataFrame, problems: list[Problem]) -> pd.DataFrame:
    """Attach question fields to a policy's samples and grade them with the world's answer extractor."""
    p = [problems[i] for i in df["prompt_index"]]
    parsed = [extract_answer(t) for t in df["text"]]
    out = pd.DataFrame({
        "qid": [q.qid for q in p],
        "num_steps": [q.num_steps for q in p],
        "sample_index": df["sample_index"].to_numpy(),
        "text": df["text"].to_numpy(),
        "num_tokens": df["num_tokens"].to_numpy(),
        "finish_reason": df["finish_reason"].to_numpy(),
        "answer": pd.array(parsed, dtype="Int64"),
        "correct": [a is not None and a == q.answer for a, q in zip(parsed, p)],
    })
    return out
