"""The one results table: a tidy row per (method, setting, budget, seed, question) for every selection and search
run, with its measured costs. Curves, per-bin tables and findings are functions of this table, so a results table
made from real models goes through the same code.

    rows = pd.concat([selection_results(pool, "majority", budgets, 200, seed, "majority", bins=bins),
                      search_results(runs, bins)])
    curve = summarize(rows[rows.setting == "majority"], by=["setting"])   # budget, accuracy, low, high, setting

Columns (RESULT_COLUMNS): method (the rule or search family: majority, best_of_n, best_of_n_weighted, pass_at_n,
beam, lookahead, dvts), setting (its label, e.g. "beam M=4"), budget (generations, the paper's x), seed, qid, bin,
correct (the question's accuracy: 0/1 for a search run, the expected accuracy over random subsets for a selection
rule), generations, policy_tokens (decode), prefill_tokens, verifier_tokens, verifier_calls, flops (per question;
flops = 2 · non-embedding parameters · tokens for the policy, prefill and decode, and for the verifier).

Three cost axes (`COSTS`, see `accounted`): generations (arXiv v1: verifier calls are free), ICLR (one generation
per verifier call actually made: best-of-N weighted at N pays N calls, beam search pays for every candidate it scores
in every round) and measured FLOPs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .chains import chain_accuracy
from .estimators import accuracy_curve, curve_summary, pass_at_k_curve

RESULT_COLUMNS = ["method", "setting", "budget", "seed", "qid", "bin", "correct", "generations", "policy_tokens",
                  "prefill_tokens", "verifier_tokens", "verifier_calls", "flops"]
COSTS = ("arxiv", "iclr", "flops")
COST_LABELS = {"arxiv": "generations (arXiv accounting: verifier calls free)",
               "iclr": "generations + verifier calls made (ICLR accounting)",
               "flops": "measured FLOPs per question (policy and verifier, prefill and decode)"}
VERIFIER_RULES = ("best_of_n", "best_of_n_weighted")


def flops(policy_params: int | None, verifier_params: int | None, policy_tokens, prefill_tokens, verifier_tokens):
    """Measured FLOPs of a forward pass over those tokens: 2 · non-embedding parameters · tokens, per model
    (NaN where a model's parameter count was not given)."""
    policy_params = np.nan if policy_params is None else policy_params
    verifier_params = np.nan if verifier_params is None else verifier_params
    verifier_tokens = np.asarray(verifier_tokens, dtype=float)
    return 2.0 * policy_params * (np.asarray(policy_tokens) + np.asarray(prefill_tokens)) \
        + np.where(verifier_tokens > 0, 2.0 * verifier_params * verifier_tokens, 0.0)


def selection_results(samples: pd.DataFrame, rule: str, budgets: list[int], num_subsets: int, seed: int,
                      setting: str, score_col: str | None = None, bins: pd.DataFrame | None = None,
                      policy_params: int | None = None, verifier_params: int | None = None) -> pd.DataFrame:
    """Rows of `rule` ("pass_at_n", "majority", "best_of_n", "best_of_n_weighted") applied to random subsets of
    each question's samples at every budget. Costs are what N samples of the question cost on average: N
    generations, N times its mean policy (decode and prefill) tokens, and for a verifier rule N calls and N times
    its mean verifier tokens; flops from those and the models' non-embedding parameters."""
    if rule == "pass_at_n":
        curve = pass_at_k_curve(samples, budgets)
    else:
        curve = accuracy_curve(samples, budgets, rule, num_subsets, seed,
                               **({"score_col": score_col} if score_col else {}))
    per_q = samples.groupby("qid").agg(policy_tokens=("num_tokens", "mean"), prefill_tokens=("prompt_tokens", "mean"))
    uses_verifier = rule in VERIFIER_RULES
    per_q["verifier_tokens"] = samples.groupby("qid").verifier_tokens.mean() if uses_verifier else 0.0
    out = curve.join(per_q, on="qid")
    n = out.budget.to_numpy()
    out = out.assign(method=rule, setting=setting, seed=0, correct=out.accuracy, generations=n,
                     policy_tokens=out.policy_tokens * n, prefill_tokens=out.prefill_tokens * n,
                     verifier_tokens=out.verifier_tokens * n, verifier_calls=n if uses_verifier else 0)
    out = out.assign(flops=flops(policy_params, verifier_params, out.policy_tokens,
                                 out.prefill_tokens, out.verifier_tokens))
    return _with_bins(out, bins)


def search_results(runs: pd.DataFrame, bins: pd.DataFrame | None = None, policy_params: int | None = None,
                   verifier_params: int | None = None) -> pd.DataFrame:
    """Rows of search runs (`stages.prm_search.run_search_plan`: one row per setting, seed and question)."""
    # a run's own `method` (beam / dvts) and derived `seed` give way to its plot style and its search seed
    out = runs.drop(columns=["method", "seed"], errors="ignore").rename(
        columns={"style": "method", "label": "setting", "search_seed": "seed"})
    out = out.assign(correct=out.correct.astype(float),
                     flops=flops(policy_params, verifier_params, out.policy_tokens, out.prefill_tokens,
                                 out.verifier_tokens))
    return _with_bins(out, bins)


def chain_results(chains: pd.DataFrame, rule: str, shapes: list[tuple[int, int]], seed: int, setting: str,
                  score_col: str | None = None, bins: pd.DataFrame | None = None, policy_params: int | None = None,
                  verifier_params: int | None = None, method: str | None = None) -> pd.DataFrame:
    """Rows of revision chains (`chains.sample_chains`, with `score_col` and `verifier_tokens` where a verifier
    scored them) selected by `rule` at every (S sequential, P parallel) of `shapes`: budget S·P, the tokens of the
    S·P attempts read, a verifier call per attempt for a verifier rule. `method` defaults to `rule`."""
    frames = []
    uses_verifier = rule in VERIFIER_RULES
    for s, p in shapes:
        part = chains[(chains.step <= s) & (chains.chain < p)]
        cost = part.groupby("qid").agg(policy_tokens=("num_tokens", "sum"), prefill_tokens=("prompt_tokens", "sum"),
                                       **({"verifier_tokens": ("verifier_tokens", "sum")} if uses_verifier else {}))
        acc = chain_accuracy(part, s, p, rule, seed, score_col).join(cost, on="qid")
        frames.append(acc.assign(sequential=s, parallel=p))
    out = pd.concat(frames, ignore_index=True)
    if not uses_verifier:
        out["verifier_tokens"] = 0
    out = out.assign(method=method or rule, setting=setting, seed=chains.seed.iloc[0] if "seed" in chains else seed,
                     budget=out.generations, correct=out.correct.astype(float),
                     verifier_calls=out.generations if uses_verifier else 0)
    out = out.assign(flops=flops(policy_params, verifier_params, out.policy_tokens, out.prefill_tokens,
                                 out.verifier_tokens))
    return _with_bins(out, bins, extra=["sequential", "parallel"])


def _with_bins(rows: pd.DataFrame, bins: pd.DataFrame | None, extra: list[str] = ()) -> pd.DataFrame:
    rows = rows.assign(bin=rows.qid.map(bins.set_index("qid").bin) if bins is not None else np.nan)
    return rows[RESULT_COLUMNS + list(extra)].reset_index(drop=True)


def accounted(rows: pd.DataFrame, cost: str) -> pd.DataFrame:
    """`rows` with a `cost` column, each row's x position under `cost` (one of COSTS): arxiv, the generations
    (verifier calls are free); iclr, the generations plus one per verifier call the method actually made; flops,
    the measured FLOPs."""
    if cost not in COSTS:
        raise ValueError(f"cost={cost!r} is not allowed: expected one of {COSTS}")
    x = {"arxiv": rows.generations, "iclr": rows.generations + rows.verifier_calls, "flops": rows.flops}[cost]
    return rows.assign(cost=x.astype(float))


def summarize(rows: pd.DataFrame, by: list[str], seed: int = 0) -> pd.DataFrame:
    """Per group of `by` and budget: mean accuracy over questions (each question's accuracy averaged over seeds)
    with a 95% bootstrap band over questions, and the mean `cost` when the rows have one (`accounted`). Columns
    budget, accuracy, low, high, [cost,] *by; groups in sorted order."""
    has_cost = "cost" in rows.columns
    agg = {"correct": "mean", **({"cost": "mean"} if has_cost else {})}
    per_q = rows.groupby([*by, "budget", "qid"], as_index=False).agg(agg)  # sorted by qid within a group
    frames = []
    for key, g in per_q.groupby(by):
        s = curve_summary(g.rename(columns={"correct": "accuracy"}), seed=seed)
        if has_cost:
            s = s.assign(cost=s.budget.map(g.groupby("budget").cost.mean()))
        frames.append(s.assign(**dict(zip(by, key if isinstance(key, tuple) else (key,)))))
    if not frames:  # no rows (e.g. a control that needs two questions, on one)
        return pd.DataFrame(columns=["budget", "accuracy", "low", "high", *(["cost"] if has_cost else []), *by])
    return pd.concat(frames, ignore_index=True)


def accuracy_at(summary: pd.DataFrame, by: str) -> pd.Series:
    """summary (from `summarize`) as a Series indexed by (its `by` column, budget)."""
    return summary.set_index([by, "budget"]).accuracy
