"""Notebook 01's stages: the sample pool every later notebook reads, its oracle difficulty bins, and the ladder
per bin.

Best-of-N, majority and weighted voting, difficulty bins and PRM scoring all read this one pool; curves at
budget N < K come from random subsets of it (`estimators`). Oracle difficulty bins are the base policy's
pass@1 on one half of the pool (`bin_half`: sample_index < pool_size / 2), cut into quantiles (`difficulty`), and
are cached next to it; per-bin curves read the other half (`curve_half`), so a question is not easy *because* the
samples a curve is estimated from happen to be right (that selection bias is what the split removes).

    ladder, _ = common.ladder(cfg)
    pool = sample_pool(cfg, ladder)            # qid, sample_index, text, answer, correct, num_tokens, seed, ...
    bins = difficulty_bins(cfg, pool)          # qid, pass1, bin (1 = easiest)
"""
from __future__ import annotations

import pandas as pd

from ..difficulty import oracle_bins
from ..evaluation import ladder_accuracy_per_bin, pass1_per_question
from ..policy import SamplingParams
from ..results import selection_results
from ..sampling import sample_problems
from . import common


def pool_sampling_params(cfg) -> SamplingParams:
    return SamplingParams(n=cfg.pool_size, temperature=cfg.temperature, max_new_tokens=common.max_new_tokens(cfg))


def sample_pool(cfg, ladder: pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """The pool of `pool_size` samples per test question (this run's shard of it when num_shards > 1)."""
    return sample_problems(cfg.cache(), common.base_policy(cfg, ladder), common.task(cfg), common.test_questions(cfg),
                           pool_sampling_params(cfg), cfg.seed, name="pool", progress=progress,
                           shard=cfg.shard, num_shards=cfg.num_shards)


def bin_half(cfg, pool: pd.DataFrame) -> pd.DataFrame:
    """The pool samples the oracle bins are estimated from: the first half of each question's samples."""
    return pool[pool.sample_index < cfg.pool_size // 2]


def curve_half(cfg, pool: pd.DataFrame) -> pd.DataFrame:
    """The pool samples per-bin curves are estimated from: the half the bins never saw."""
    return pool[pool.sample_index >= cfg.pool_size // 2]


def half_budgets(cfg) -> list[int]:
    """Budgets a per-bin curve reaches on `curve_half`: 1, 2, 4 ... pool_size / 2."""
    return [b for b in cfg.budgets() if b <= cfg.pool_size // 2]


def difficulty_bins(cfg, pool: pd.DataFrame) -> pd.DataFrame:
    """Per question: pass@1 on `bin_half` of the pool and its oracle bin (1 = easiest), cached as an artifact."""
    per_q = pass1_per_question(bin_half(cfg, pool))
    key = {"pool": sorted(pool.qid.unique().tolist())[:3], "n": len(pool), "pass1": per_q.pass1.round(12).tolist(),
           "num_bins": cfg.num_bins}

    def compute() -> pd.DataFrame:
        bins = oracle_bins(per_q.set_index("qid").pass1, cfg.num_bins)
        return per_q.assign(bin=per_q.qid.map(bins).astype(int))

    return cfg.cache().table("bins", key, compute)


def ladder_per_bin(cfg, ladder: pd.DataFrame, bins: pd.DataFrame) -> pd.DataFrame:
    """Greedy and sampled pass@1 of every ladder rung per oracle bin (the FLOPs-matched notebook reuses it)."""
    return ladder_accuracy_per_bin(cfg.cache(), ladder, common.task(cfg), common.test_questions(cfg), bins, cfg.seed,
                                   cfg.ladder_samples, cfg.temperature, common.max_new_tokens(cfg), cfg.device)


def pool_results(cfg, pool: pd.DataFrame, bins: pd.DataFrame, policy_params: int | None = None) -> pd.DataFrame:
    """The notebook's results table (`results.RESULT_COLUMNS` and `scope`), cached: pass@N (unbiased) and majority@N
    (averaged over `num_subsets` random subsets) per question, on the whole pool at every budget up to the pool
    size (scope "pool") and on `curve_half` up to half of it (scope "curve half", for per-bin curves)."""
    def compute() -> pd.DataFrame:
        return pd.concat([selection_results(frame, rule, at, cfg.num_subsets, cfg.seed, rule, bins=bins,
                                            policy_params=policy_params).assign(scope=scope)
                          for scope, frame, at in (("pool", pool, cfg.budgets()),
                                                   ("curve half", curve_half(cfg, pool), half_budgets(cfg)))
                          for rule in ("pass_at_n", "majority")], ignore_index=True)

    key = {"config": cfg.cache_key(), "bins": bins.bin.tolist(), "policy_params": policy_params,
           "pool": pd.util.hash_pandas_object(pool[["qid", "text"]], index=False).sum().item()}
    return cfg.cache().table("results-01_difficulty_bins", key, compute)
