"""Notebook 04's stages: notebooks 02 and 03's results tables (read from their caches with their own configs), the
candidates and baselines compute-optimal selection works on, predicted difficulty bins and their cost, and the
notebook's claims.

    search = search_tables(cfg)          # results, pool, prm_pool, bins, params of notebook 02
    revision = revision_tables(cfg)      # results, pool, bins, revision ORM, params of notebook 03
    cands = search_candidates(cfg, search["results"])   # what compute-optimal search picks from
    pred = search_predicted_bins(cfg, search["prm_pool"])  # qid, score, samples, bin (no ground truth)
"""
from __future__ import annotations

import pandas as pd
from scipy import stats

from ..checks import check
from ..compute_optimal import allocate_budget, charge, compute_optimal, efficiency_ratio
from ..difficulty import predicted_bins
from ..findings import Arm, Claim
from ..plots import METHOD_STYLE, PALETTE
from ..results import flops
from . import common, prm_search
from . import pool as pool_stages
from . import revisions as revision_stages

# notebook 03's verifier setting that compute-optimal revisions select with
REVISION_VERIFIER = "revision ORM"
# each kind's best-of-N weighted: the efficiency ratio's reference
REFERENCE = {"search": "PRM best-of-N weighted", "revisions": "parallel, best-of-N weighted"}
# Fig. 1 (left): compute-optimal against best-of-N weighted
SUMMARY = [REFERENCE["revisions"], *[f"compute-optimal revisions, {b}" for b in ("oracle bins", "predicted bins")],
           REFERENCE["search"], *[f"compute-optimal search, {b}" for b in ("oracle bins", "predicted bins")]]


def search_tables(cfg) -> dict:
    """Notebook 02's stages, every one read from the cache when notebook 02 ran with the same values: the results
    table, the pool, its PRM scores, the oracle bins, the models' parameters, the PRM, its labels and the ladder."""
    c = cfg.for_notebook("02_prm_search")
    ladder, _ = common.ladder(c)
    policy = common.base_policy(c, ladder)
    pool = pool_stages.sample_pool(c, ladder)
    bins = pool_stages.difficulty_bins(c, pool)
    labels = prm_search.prm_labels(c, policy)
    verifiers = prm_search.reward_models(c, prm_search.verifier_base(c, ladder), policy, labels)
    pools = prm_search.score_pools(c, verifiers, pool)
    runs = prm_search.run_search_plan(c, policy, verifiers, prm_search.search_plan(c))
    params = prm_search.model_params(c, ladder, policy, verifiers)
    results = prm_search.results(c, pool, pools, runs, bins, params)
    prm, prm_pool = verifiers["prm"], pools["prm"]
    return {"results": results, "pool": pool, "prm_pool": prm_pool, "bins": bins, "params": params, "prm": prm,
            "labels": labels, "ladder": ladder}


def revision_tables(cfg) -> dict:
    """Notebook 03's stages, read from its cache: the results table (every (S, P) by each verifier and majority), the
    revision ORM and the models' parameters."""
    c = cfg.for_notebook("03_revisions")
    ladder, _ = common.ladder(c)
    policy = common.base_policy(c, ladder)
    model, _ = revision_stages.revision_model(c, policy)
    chains = revision_stages.all_test_chains(c, model)
    pool = pool_stages.sample_pool(c, ladder)
    bins = pool_stages.difficulty_bins(c, pool)
    base = prm_search.verifier_base(c, ladder)
    prm, _ = prm_search.train_reward_models(c, base, prm_search.prm_labels(c, policy))
    verifiers = revision_stages.verifiers(c, model, policy, prm)
    scored = revision_stages.score_all(c, verifiers, chains)
    params = prm_search.model_params(c, ladder, policy, {k: v for k, (v, _) in verifiers.items()})
    results = revision_stages.results(c, scored, bins, params)
    return {"results": results, "pool": pool, "bins": bins, "orm": verifiers[REVISION_VERIFIER][0],
            "params": params}


def search_candidates(cfg, results: pd.DataFrame) -> pd.DataFrame:
    """What compute-optimal search chooses among, on the search subset: every search setting against the default PRM
    (beam M=4 and M=sqrt N, lookahead, DVTS; runs on their own samples) and best-of-N weighted on the half of the
    pool the oracle and predicted bins never read (so a bin never holds a question because of the very samples its
    accuracy is estimated from), restricted to `search_methods`."""
    plan = prm_search.search_plan(cfg.for_notebook("02_prm_search"))
    searched = {s.label for s in plan if s.verifier == "prm"}
    rows = results[((results.scope == "search") & results.setting.isin(searched))
                   | ((results.scope == "curve half") & (results.setting == "best-of-N weighted"))]
    have = sorted(rows.method.unique())
    missing = [m for m in cfg.search_methods if m not in have]
    check(not missing, "search_methods", cfg.search_methods,
          f"methods of notebook 02's results table ({have}); {missing} has no rows")
    return rows[rows.method.isin(cfg.search_methods)]


def search_baselines(cfg, results: pd.DataFrame) -> pd.DataFrame:
    """Fig. 4's baselines on the search subset, every pool budget: majority and ORM / PRM best-of-N weighted (the
    PRM's is the efficiency ratio's reference), relabelled for the figure."""
    subset = {p.qid for p in prm_search.search_subset(cfg.for_notebook("02_prm_search"))}
    names = {"majority": "majority", "ORM": "ORM best-of-N weighted",
             f"PRM {cfg.aggregation}": "PRM best-of-N weighted"}
    rows = results[(results.scope == "pool") & results.setting.isin(names) & results.qid.isin(subset)]
    return rows.assign(setting=rows.setting.map(names))


def revision_candidates(results: pd.DataFrame) -> pd.DataFrame:
    """Every (S, P) of notebook 03's sweep selected by hierarchical best-of-N weighted with the revision ORM, each
    (S, P) a candidate of compute-optimal revisions (setting "S=.., P=..")."""
    rows = results[results.setting == REVISION_VERIFIER]
    return rows.assign(setting=[f"S={s}, P={p}" for s, p in zip(rows.sequential, rows.parallel)])


def revision_baselines(results: pd.DataFrame) -> pd.DataFrame:
    """Fig. 8's baselines: parallel sampling (S = 1) of the revision model, best-of-N weighted with the revision ORM
    (the efficiency ratio's reference) and majority; and sequential revisions (P = 1) with the revision ORM."""
    weighted = results[results.setting == REVISION_VERIFIER]
    majority = results[(results.setting == "majority") & (results.sequential == 1)]
    return pd.concat([weighted[weighted.sequential == 1].assign(setting="parallel, best-of-N weighted"),
                      majority.assign(setting="parallel, majority"),
                      weighted[weighted.parallel == 1].assign(setting="sequential, best-of-N weighted")],
                     ignore_index=True)


def prediction_half(cfg, pool: pd.DataFrame) -> pd.DataFrame:
    """The pool samples difficulty is predicted from: the first `prediction_samples` of the half the oracle bins read
    (so the compute-optimal candidates' best-of-N never shares a sample with either binning)."""
    return pool_stages.bin_half(cfg, pool).query("sample_index < @cfg.prediction_samples")


def search_predicted_bins(cfg, prm_pool: pd.DataFrame) -> pd.DataFrame:
    """Predicted bins of the test questions: quantiles of the PRM's mean final score over `prediction_half`."""
    return predicted_bins(prediction_half(cfg, prm_pool), cfg.aggregation, cfg.num_bins)


def revision_predicted_bins(cfg, orm, pool: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predicted bins, scored samples) of the revision test questions: quantiles of the revision ORM's mean score
    over the questions' `prediction_half` (base-policy samples with no previous attempt, as a chain's first)."""
    c = cfg.for_notebook("03_revisions")
    subset = {p.qid for p in revision_stages.test_subset(c)}
    half = prediction_half(cfg, pool)
    scored = prm_search.score_pool(c, orm, half[half.qid.isin(subset)], "scores-revision-ORM-pool")
    return predicted_bins(scored, "last", cfg.num_bins), scored


def prediction_cost(scored: pd.DataFrame, policy_params: int, verifier_params: int) -> pd.DataFrame:
    """Per question, what predicting its difficulty cost: its prediction samples' generations, tokens, verifier
    calls and FLOPs (`compute_optimal.charge` adds them to a curve)."""
    cost = scored.groupby("qid").agg(generations=("sample_index", "size"), policy_tokens=("num_tokens", "sum"),
                                     prefill_tokens=("prompt_tokens", "sum"),
                                     verifier_tokens=("verifier_tokens", "sum"))
    cost = cost.assign(verifier_calls=cost.generations,
                       flops=flops(policy_params, verifier_params, cost.policy_tokens, cost.prefill_tokens,
                                   cost.verifier_tokens))
    return cost.reset_index()


def agreement(oracle: pd.DataFrame, predicted: pd.DataFrame) -> dict:
    """How well predicted bins agree with oracle bins on the questions both have: Spearman's rank correlation of the
    bins, the share in the same bin and within one bin."""
    both = oracle.set_index("qid").bin.to_frame("oracle").join(predicted.set_index("qid").bin.rename("predicted"),
                                                               how="inner")
    rho = stats.spearmanr(both.oracle, both.predicted)
    gap = (both.oracle - both.predicted).abs()
    return {"questions": len(both), "spearman": float(rho.statistic), "p_value": float(rho.pvalue),
            "same_bin": float((gap == 0).mean()), "within_one_bin": float((gap <= 1).mean())}


def with_bins(rows: pd.DataFrame, bins: pd.DataFrame) -> pd.DataFrame:
    """`rows` with their bin replaced by `bins` (qid, bin), only the questions `bins` has."""
    mapping = bins.set_index("qid").bin
    rows = rows[rows.qid.isin(mapping.index)]
    return rows.assign(bin=rows.qid.map(mapping))


def small_budgets(cfg) -> dict[str, int]:
    """The small budget of each kind's claims: 16 (the paper's "16 vs 64"), or a quarter of the largest budget."""
    return {"search": min(16, max(1, cfg.max_budget // 4)), "revisions": min(16, max(1, cfg.revision_max_budget // 4))}


def optimal(cfg, candidates: pd.DataFrame, kind: str, predicted: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """(rows, choices per binning) of compute-optimal `kind` ("search" or "revisions") with oracle bins (the rows'
    own), predicted bins, and one bin for every question (a choice per budget only: what binning adds)."""
    frames, choices = [], {}
    for label, rows in (("oracle bins", candidates), ("predicted bins", with_bins(candidates, predicted)),
                        ("one bin", candidates.assign(bin=1))):
        out, choices[label] = compute_optimal(rows, ["setting"], cfg.folds, cfg.seed,
                                              f"compute-optimal {kind}, {label}")
        frames.append(out)
    return pd.concat(frames, ignore_index=True), choices


def charged(rows: pd.DataFrame, kind: str, cost: pd.DataFrame) -> pd.DataFrame:
    """Compute-optimal `kind` with predicted bins, each question charged what predicting its bin cost."""
    predicted = rows[rows.setting == f"compute-optimal {kind}, predicted bins"]
    return charge(predicted, cost, f"compute-optimal {kind}, predicted bins, prediction charged")


def adaptive(cfg, candidates: pd.DataFrame, predicted: pd.DataFrame, budgets: list[int]
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows, allocations) of the budget allocated per predicted bin (`allocate_budget`) at each mean budget."""
    rows, allocations = [], []
    binned = with_bins(candidates, predicted)
    for n in budgets:
        out, alloc = allocate_budget(binned, n, ["setting"], cfg.folds, cfg.seed,
                                     "adaptive budget search, predicted bins")
        rows.append(out)
        allocations.append(alloc.assign(mean_budget=n))
    return pd.concat(rows, ignore_index=True), pd.concat(allocations, ignore_index=True)


def efficiency(cfg, rows: pd.DataFrame, kind: str, results: pd.DataFrame) -> pd.DataFrame:
    """The efficiency ratio of compute-optimal `kind` (oracle and predicted bins, `rows`) against the kind's best-of-N
    weighted in `results` (`REFERENCE`)."""
    reference = results[results.setting == REFERENCE[kind]]
    return pd.concat([efficiency_ratio(rows[rows.setting == f"compute-optimal {kind}, {b}"], reference,
                                       cfg.efficiency_resamples, cfg.seed).assign(kind=kind, bins=b)
                      for b in ("oracle bins", "predicted bins")], ignore_index=True)


def curve_colors() -> dict:
    """A fixed colour per curve of the notebook's figures."""
    out = {"majority": METHOD_STYLE["majority"][0], "ORM best-of-N weighted": PALETTE[1],
           REFERENCE["search"]: METHOD_STYLE["best_of_n_weighted"][0], "parallel, majority": PALETTE[0],
           REFERENCE["revisions"]: METHOD_STYLE["best_of_n_weighted"][0],
           "sequential, best-of-N weighted": METHOD_STYLE["revisions"][0],
           "adaptive budget search, predicted bins": PALETTE[9]}
    for kind in ("search", "revisions"):
        out.update({f"compute-optimal {kind}, oracle bins": PALETTE[3],
                    f"compute-optimal {kind}, predicted bins": PALETTE[4],
                    f"compute-optimal {kind}, predicted bins, prediction charged": PALETTE[4]})
    return out


def claims(cfg) -> list[Claim]:
    """The paper's compute-optimal findings (§3.2, §5.3, §6.3) as paired comparisons on notebook 04's results table:
    compute-optimal (oracle and predicted bins) against best-of-N weighted at a small budget (`small_budgets`), against
    best-of-N weighted at 4x that budget (the paper: "4x less compute"), and at the largest budget; whether
    binning by difficulty adds anything over one cross-validated choice for every question; and beyond the paper, the
    budget itself allocated per predicted bin against per-bin compute-optimal at the same mean budget."""
    out, smalls = [], small_budgets(cfg)
    for kind, bon in REFERENCE.items():
        oracle, predicted = f"compute-optimal {kind}, oracle bins", f"compute-optimal {kind}, predicted bins"
        top, small = (cfg.max_budget if kind == "search" else cfg.revision_max_budget), smalls[kind]
        out += [
            Claim(f"compute-optimal {kind} (oracle bins) beats {bon} at N={small}", Arm(oracle, small),
                  Arm(bon, small)),
            Claim(f"compute-optimal {kind} (predicted bins) beats {bon} at N={small}", Arm(predicted, small),
                  Arm(bon, small)),
            Claim(f"compute-optimal {kind} (oracle bins) at N={small} beats {bon} at N={4 * small} (4x the budget)",
                  Arm(oracle, small), Arm(bon, 4 * small)),
            Claim(f"compute-optimal {kind} (oracle bins) beats {bon} at N={top}", Arm(oracle, top), Arm(bon, top)),
            Claim(f"compute-optimal {kind}: oracle bins beat predicted bins at N={small} (the paper: close)",
                  Arm(oracle, small), Arm(predicted, small)),
            Claim(f"compute-optimal {kind}: choosing per oracle bin beats one choice for every question at N={small}",
                  Arm(oracle, small), Arm(f"compute-optimal {kind}, one bin", small)),
        ]
    n = smalls["search"]
    out.append(Claim(f"beyond the paper: a budget per predicted bin beats per-bin compute-optimal search at the same "
                     f"mean budget (N={n})", Arm("adaptive budget search, predicted bins", n),
                     Arm("compute-optimal search, predicted bins", n)))
    return out
