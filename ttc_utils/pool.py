"""The sample pool: K samples per test question from the base policy, drawn once and read by every notebook.

Best-of-N, majority and weighted voting, difficulty bins and PRM scoring all read this one pool;
curves at budget N < K come from random subsets of it (`estimators`). Oracle difficulty bins are the
base policy's pass@1 on the pool, cut into quantiles (`difficulty`), and are cached next to it.

    ladder, _ = train_ladder(cfg.cache(), cfg.world(), cfg.sizes(), cfg.train())
    pool = sample_pool(cfg, ladder)            # qid, sample_index, text, answer, correct, num_tokens, seed, ...
    bins = difficulty_bins(cfg, pool)          # qid, pass1, bin (1 = easiest)
"""
from __future__ import annotations

import pandas as pd

from .difficulty import oracle_bins
from .evaluation import pass1_per_question
from .policy import SamplingParams
from .sampling import sample_problems
from .world import Problem, generate, max_solution_chars


def test_questions(cfg) -> list[Problem]:
    """The profile's test split: `num_test` distinct questions, the same in every notebook."""
    return generate(cfg.world(), cfg.num_test, "test", cfg.seed)


def base_policy_path(cfg, ladder: pd.DataFrame) -> str:
    """`policy_path` if given, else the ladder's smallest rung (the base policy)."""
    return cfg.policy_path or str(ladder.path.iloc[0])


def pool_sampling_params(cfg) -> SamplingParams:
    # A correct solution and its eos always fit; longer samples are garbage and only cost time.
    return SamplingParams(n=cfg.pool_size, temperature=cfg.temperature,
                          max_new_tokens=max_solution_chars(cfg.world()) + 1)


def sample_pool(cfg, ladder: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """The pool of `pool_size` samples per test question (this run's shard of it when num_shards > 1)."""
    return sample_problems(cfg.cache(), base_policy_path(cfg, ladder), test_questions(cfg),
                           pool_sampling_params(cfg), cfg.seed, name="pool", progress=progress,
                           shard=cfg.shard, num_shards=cfg.num_shards)


def difficulty_bins(cfg, pool: pd.DataFrame) -> pd.DataFrame:
    """Per question: pass@1 on the pool and its oracle bin (1 = easiest), cached as an artifact."""
    per_q = pass1_per_question(pool)
    key = {"pool": sorted(pool.qid.unique().tolist())[:3], "n": len(pool), "pass1": per_q.pass1.round(12).tolist(),
           "num_bins": cfg.num_bins}

    def compute() -> pd.DataFrame:
        bins = oracle_bins(per_q.set_index("qid").pass1, cfg.num_bins)
        return per_q.assign(bin=per_q.qid.map(bins).astype(int))

    return cfg.cache().table("bins", key, compute)
