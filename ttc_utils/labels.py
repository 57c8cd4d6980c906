"""Monte Carlo step labels for a PRM (Math-Shepherd, as the paper does), on a task's training problems.

The base policy samples solutions; for each step prefix of a solution with a parsable answer, R rollouts
continue from that prefix and the step's soft label is the fraction of them that reach the right answer.
The final-answer step is labelled by the solution's own correctness. Where the task knows the truth of every
step (the arithmetic world), it is stored alongside; the PRM never sees it.

    labels = mc_labels(cache, ModelSpec(policy_path), task, problems, SamplingParams(n=16), rollouts=8, seed=0)
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from .cache import Cache, content_key
from .checks import check_int
from .policy import SamplingParams, derive_seed
from .registry import Lazy, kept_policy
from .sampling import question_chunks, sample_problems

LABEL_COLUMNS = ["qid", "sample_index", "prompt", "completion", "correct", "targets", "truth", "rollouts"]


def step_prefixes(task, completion: str) -> list[str]:
    """The completion up to and including the end of each of its steps."""
    out, pos = [], 0
    for s in task.split_steps(completion):
        pos += len(s)
        out.append(completion[:pos])
    return out


def mc_labels(cache: Cache, policy, task, problems: list, params: SamplingParams, rollouts: int, seed: int,
              questions_per_chunk: int = 32, batch_size: int = 512, progress: bool = True) -> pd.DataFrame:
    """One row per sampled solution with a parsable answer: qid, prompt, completion (cut after the answer
    step), correct, targets (the soft label of every step; the last is the answer step's 0/1), truth (the task's
    verdict per step where it has one, else all-None), and rollouts (how many were run per prefix).

    Identical prefixes of one question share their rollouts (they are the same random variable), and the R
    rollouts of one prefix share its prefill (`Policy.sample_shared`).
    """
    check_int("rollouts", rollouts)
    solutions = sample_problems(cache, policy, task, problems, params, seed, questions_per_chunk=questions_per_chunk,
                                batch_size=batch_size, name="prm-solutions", progress=progress)
    by_qid = {p.qid: p for p in problems}
    chunks = question_chunks(problems, questions_per_chunk)
    rollout_params = SamplingParams(n=rollouts, temperature=params.temperature, top_p=params.top_p,
                                    max_new_tokens=params.max_new_tokens)
    key = {"policy": policy.key(), "task": task.key, "questions": content_key([p.qid for p in problems]),
           "sampling": asdict(params), "rollouts": rollouts, "seed": seed,
           "questions_per_chunk": questions_per_chunk, "batch_size": batch_size, "sampler": "shared-prefill"}
    # the stage's chunk bar is its one bar
    model = Lazy(lambda: kept_policy(policy, batch_size=batch_size, progress=False))

    def compute(i: int) -> pd.DataFrame:
        qids = {p.qid for p in chunks[i]}
        sols = solutions[solutions.qid.isin(qids) & solutions.answer.notna()]
        texts = [task.through_answer(t) for t in sols.text]
        prefixes = {}  # (qid, prefix) -> index; the answer step's prefix needs no rollouts
        for qid, text in zip(sols.qid, texts):
            for pre in step_prefixes(task, text)[:-1]:
                prefixes.setdefault((qid, pre), len(prefixes))
        values = np.zeros(len(prefixes))
        if prefixes:
            pairs = list(prefixes)
            prompts = [task.prompt(by_qid[q]) + pre for q, pre in pairs]
            out = model.get().sample_shared(prompts, rollout_params, seed=derive_seed(seed, "rollouts", i))
            ok = [task.is_correct(by_qid[pairs[j][0]], pairs[j][1] + t) for j, t in zip(out.prompt_index, out.text)]
            values = pd.Series(ok, dtype=float).groupby(out.prompt_index.to_numpy()).mean().reindex(
                range(len(pairs))).to_numpy()
        rows = []
        for qid, text, correct, sample_index in zip(sols.qid, texts, sols.correct, sols.sample_index):
            pres = step_prefixes(task, text)
            targets = [float(values[prefixes[(qid, p)]]) for p in pres[:-1]] + [float(correct)]
            # the task's verdict per step (an empty line counts as a wrong step), then the answer's
            lines = task.step_truth(by_qid[qid], text)
            truth = ([None] * (len(pres) - 1) if lines is None
                     else (lines + [False] * len(pres))[:len(pres) - 1]) + [bool(correct)]
            rows.append({"qid": qid, "sample_index": int(sample_index), "prompt": task.prompt(by_qid[qid]),
                         "completion": text, "correct": bool(correct), "targets": targets, "truth": truth,
                         "rollouts": rollouts})
        return pd.DataFrame(rows, columns=LABEL_COLUMNS)

    return cache.chunked("prm-labels", key, len(chunks), compute, desc=f"MC rollouts ({len(problems)} questions)",
                         progress=progress)


def flip_labels(labels: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """`labels` with a random `share` of the step targets flipped (t -> 1 - t, each step independently, seeded): the
    ICLR paper's weaker PRM ("20% of its labels flipped"). `correct` and the step truth are left alone."""
    if not 0 <= share <= 1:
        raise ValueError(f"share={share!r} is not allowed: expected a fraction in [0, 1]")
    rng = np.random.default_rng(derive_seed(seed, "flip-labels"))
    flipped = []
    for t in labels.targets:
        t = np.asarray(t, dtype=float)
        flipped.append(np.where(rng.random(len(t)) < share, 1.0 - t, t))
    return labels.assign(targets=flipped)
