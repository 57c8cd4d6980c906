"""Accuracy tables of policies on the world: greedy accuracy per difficulty knob, per-question pass@1.

    samples = sample_problems(cache, path, problems, SamplingParams(n=64), seed)
    per_q = pass1_per_question(samples)          # qid, num_steps, pass1
    pass1_buckets(per_q["pass1"])                # share of questions per [0,.2) ... [.8,1] bucket
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .cache import Cache
from .policy import SamplingParams
from .sampling import sample_problems
from .world import Problem

BUCKET_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def pass1_per_question(samples: pd.DataFrame) -> pd.DataFrame:
    """Per question: the fraction of its samples that are correct (pass@1), and its number of samples."""
    g = samples.groupby("qid", sort=False)
    return pd.DataFrame({"num_steps": g["num_steps"].first(), "pass1": g["correct"].mean(),
                         "num_samples": g.size()}).reset_index()


def pass1_buckets(pass1: pd.Series, edges=BUCKET_EDGES) -> pd.DataFrame:
    """Share and count of questions per pass@1 bucket [e0,e1), ..., [e_{k-1}, e_k] (last one closed)."""
    values = np.asarray(pass1, dtype=float)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    labels = [f"[{a:.1f},{b:.1f})" for a, b in zip(edges[:-2], edges[1:-1])] + [f"[{edges[-2]:.1f},{edges[-1]:.1f}]"]
    return pd.DataFrame({"bucket": labels, "questions": counts, "share": counts / max(1, len(values))})


def ladder_samples(cache: Cache, ladder: pd.DataFrame, problems: list[Problem], params: SamplingParams,
                   seed: int, name: str):
    """Yield (model row, its cached samples on `problems`) for every model of `ladder`."""
    for m in ladder.itertuples():
        yield m, sample_problems(cache, m.path, problems, params, seed, name=f"{name}-{m.name}")


def greedy_accuracy(cache: Cache, ladder: pd.DataFrame, problems: list[Problem], seed: int,
                    max_new_tokens: int) -> pd.DataFrame:
    """Greedy accuracy of every model of `ladder` (rows with name, path, non_embedding_params),
    per number of steps: model, non_embedding_params, num_steps, accuracy, questions."""
    rows = []
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    for m, s in ladder_samples(cache, ladder, problems, params, seed, "greedy"):
        acc = s.groupby("num_steps")["correct"].agg(["mean", "size"]).reset_index()
        for r in acc.itertuples():
            rows.append({"model": m.name, "non_embedding_params": m.non_embedding_params,
                         "num_steps": r.num_steps, "accuracy": r.mean, "questions": r.size})
    return pd.DataFrame(rows)


def ladder_accuracy_per_bin(cache: Cache, ladder: pd.DataFrame, problems: list[Problem], bins: pd.DataFrame,
                            seed: int, samples: int, temperature: float, max_new_tokens: int) -> pd.DataFrame:
    """Greedy accuracy and sampled pass@1 (`samples` per question) of every ladder model per difficulty bin
    (`bins`: qid, bin): model, non_embedding_params, decoding, bin, accuracy."""
    rows = []
    runs = (("greedy", SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)),
            ("sampled", SamplingParams(n=samples, temperature=temperature, max_new_tokens=max_new_tokens)))
    for kind, params in runs:
        for m, s in ladder_samples(cache, ladder, problems, params, seed, kind):
            acc = pass1_per_question(s).merge(bins[["qid", "bin"]], on="qid").groupby("bin").pass1.mean()
            rows += [{"model": m.name, "non_embedding_params": m.non_embedding_params, "decoding": kind,
                      "bin": b, "accuracy": a} for b, a in acc.items()]
    return pd.DataFrame(rows)
