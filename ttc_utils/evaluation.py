"""Accuracy tables of policies on a task: greedy accuracy per difficulty knob, per-question pass@1.

    samples = sample_problems(cache, ModelSpec(path), task, problems, SamplingParams(n=64), seed)
    per_q = pass1_per_question(samples)          # qid, num_steps, pass1
    pass1_buckets(per_q["pass1"])                # share of questions per [0,.2) ... [.8,1] bucket
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .cache import Cache
from .model_spec import ModelSpec
from .policy import SamplingParams
from .sampling import sample_problems

BUCKET_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# what `sampling.sample_problems` writes besides the task's features
SAMPLE_TABLE_COLUMNS = {"qid", "sample_index", "text", "num_tokens", "prompt_tokens", "finish_reason", "answer",
                        "correct", "seed"}


def pass1_per_question(samples: pd.DataFrame) -> pd.DataFrame:
    """Per question: the fraction of its samples that are correct (pass@1), and its number of samples."""
    g = samples.groupby("qid", sort=False)
    features = [c for c in samples.columns if c not in SAMPLE_TABLE_COLUMNS]  # the task's per-question columns
    return pd.DataFrame({**{c: g[c].first() for c in features}, "pass1": g["correct"].mean(),
                         "num_samples": g.size()}).reset_index()


def pass1_buckets(pass1: pd.Series, edges=BUCKET_EDGES) -> pd.DataFrame:
    """Share and count of questions per pass@1 bucket [e0,e1), ..., [e_{k-1}, e_k] (last one closed)."""
    values = np.asarray(pass1, dtype=float)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    labels = [f"[{a:.1f},{b:.1f})" for a, b in zip(edges[:-2], edges[1:-1])] + [f"[{edges[-2]:.1f},{edges[-1]:.1f}]"]
    return pd.DataFrame({"bucket": labels, "questions": counts, "share": counts / max(1, len(values))})


def ladder_samples(cache: Cache, ladder: pd.DataFrame, task, problems: list, params: SamplingParams,
                   seed: int, name: str, device: str = "cpu"):
    """Yield (model row, its cached samples on `problems`) for every model of `ladder` (rows with name, path, and
    optionally the backend that samples it)."""
    for m in ladder.itertuples():
        spec = ModelSpec(m.path, backend=getattr(m, "backend", "transformers"), device=device,
                         param=f"ladder rung {m.name}")
        yield m, sample_problems(cache, spec, task, problems, params, seed, name=f"{name}-{m.name}")


def greedy_samples(cache: Cache, ladder: pd.DataFrame, task, problems: list, seed: int, max_new_tokens: int,
                   device: str = "cpu"):
    """Yield (model row, its cached greedy sample per problem) for every model of `ladder`."""
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    yield from ladder_samples(cache, ladder, task, problems, params, seed, "greedy", device)


def greedy_accuracy(cache: Cache, ladder: pd.DataFrame, task, problems: list, seed: int,
                    max_new_tokens: int, by: str = "num_steps", device: str = "cpu") -> pd.DataFrame:
    """Greedy accuracy of every model of `ladder` (rows with name, path, non_embedding_params) per value of the
    task feature `by`: model, non_embedding_params, <by>, accuracy, questions."""
    rows = []
    for m, s in greedy_samples(cache, ladder, task, problems, seed, max_new_tokens, device):
        acc = s.groupby(by)["correct"].agg(["mean", "size"]).reset_index()
        for r in acc.itertuples():
            rows.append({"model": m.name, "non_embedding_params": m.non_embedding_params,
                         by: getattr(r, by), "accuracy": r.mean, "questions": r.size})
    return pd.DataFrame(rows)


def ladder_accuracy_per_bin(cache: Cache, ladder: pd.DataFrame, task, problems: list, bins: pd.DataFrame,
                            seed: int, samples: int, temperature: float, max_new_tokens: int,
                            device: str = "cpu") -> pd.DataFrame:
    """Greedy accuracy and sampled pass@1 (`samples` per question) of every ladder model per difficulty bin
    (`bins`: qid, bin): model, non_embedding_params, decoding, bin, accuracy."""
    rows = []
    runs = (("greedy", SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)),
            ("sampled", SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens)))
    for kind, params in runs:
        for m, s in ladder_samples(cache, ladder, task, problems, params, seed, kind, device):
            acc = pass1_per_question(s).merge(bins[["qid", "bin"]], on="qid").groupby("bin").pass1.mean()
            rows += [{"model": m.name, "non_embedding_params": m.non_embedding_params, "decoding": kind,
                      "bin": b, "accuracy": a} for b, a in acc.items()]
    return pd.DataFrame(rows)
