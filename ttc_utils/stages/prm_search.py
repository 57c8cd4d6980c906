"""Notebook 02's stages: PRM labels, the PRM and ORM (and two ablations), pool scores, the search grid, and the
results table that every curve and finding of the notebook is read from.

    labels = prm_labels(cfg, policy)                             # Monte Carlo soft labels (training split)
    verifiers = reward_models(cfg, verifier_base(cfg, ladder), policy, labels)   # "prm", "orm", "same-size"
    pools = score_pools(cfg, verifiers, pool)                    # each: the pool with last / min / prod per sample
    runs = run_search_plan(cfg, policy, verifiers, search_plan(cfg))   # one row per (setting, budget, seed, question)

With `prm_path` (an open PRM, e.g. on MATH-500) nothing is trained: `prm_labels` is None, `reward_models` holds the
open PRM alone as "prm", and the settings, curves and claims that need the ORM or the same-size PRM are left out.

On a cluster, `sample_shard` is one batch job's share of the pool scoring and the search (`num_shards` > 1,
`python -m ttc_utils.run` calls it); the shards' merged caches make the unsharded notebook sample nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import pandas as pd

from ..cache import cached_only
from ..checks import check, is_power_of_two
from ..findings import Arm, Claim
from ..labels import mc_labels
from ..model_spec import ModelSpec
from ..models import params_from_config
from ..open_prm import is_open_prm, open_prm_params
from ..policy import SamplingParams, derive_seed
from ..results import search_results, selection_results
from ..sampling import shard_chunks
from ..scoring import policy_logprobs, score_chunks, score_solutions
from ..search import SearchConfig, pending_search_chunks, run_search, search_chunks
from ..verifier_training import VerifierTrainConfig, train_record, train_verifier
from ..workers import run_jobs
from . import common
from . import pool as pool_stages


def prm_train_questions(cfg) -> list:
    """Training-split questions for the PRM's labels (disjoint from the test split by construction)."""
    return common.task(cfg).problems("train", cfg.prm_questions, derive_seed(cfg.seed, "prm") % 2**31)


def prm_labels(cfg, policy: ModelSpec, progress: bool = True) -> pd.DataFrame | None:
    """Monte Carlo step labels of the policy's samples on training questions; None with `prm_path` (nothing is
    trained then)."""
    if cfg.prm_path:
        return None
    params = SamplingParams(n=cfg.prm_samples, temperature=cfg.temperature, max_new_tokens=common.max_new_tokens(cfg))
    return mc_labels(cfg.cache(), policy, common.task(cfg), prm_train_questions(cfg), params, cfg.prm_rollouts,
                     cfg.seed, progress=progress)


def verifier_train_config(cfg) -> VerifierTrainConfig:
    return VerifierTrainConfig(head=cfg.verifier_head, learning_rate=cfg.verifier_learning_rate,
                               batch_size=cfg.verifier_batch_size, max_epochs=cfg.verifier_epochs, seed=cfg.seed)


def verifier_base(cfg, ladder: pd.DataFrame) -> ModelSpec:
    """The model the PRM and ORM are built on: ladder rung `verifier_rung` (0 is the base policy).

    Why a larger rung by default: in this world checking a step is recomputing it, so a verifier of the
    policy's own size only knows what the policy knows (the notebook measures both). With `prm_path`, the open PRM
    itself (nothing is built)."""
    if cfg.prm_path:
        return cfg.open_prm()
    if cfg.verifier_rung == 0:
        return common.base_policy(cfg, ladder)
    return common.rung(cfg, ladder, cfg.verifier_rung, "verifier_rung")


def model_params(cfg, ladder: pd.DataFrame, policy: ModelSpec, verifiers: dict[str, ModelSpec]) -> dict[str, int]:
    """Non-embedding parameters of the policy and of each verifier's backbone (for the measured FLOPs), counted
    from configs where a model was not trained here."""
    policy_params = (params_from_config(policy.path, policy.revision) if cfg.policy_path
                     else int(ladder.non_embedding_params.iloc[0]))
    return {"policy": policy_params, **{name: verifier_params(v) for name, v in verifiers.items()}}


def verifier_params(verifier: ModelSpec) -> int:
    if is_open_prm(verifier):
        return open_prm_params(verifier)
    return int(train_record(verifier.path)["non_embedding_params"])


def _train(cfg, base: ModelSpec, labels: pd.DataFrame, kind: str, train_cfg: VerifierTrainConfig) -> ModelSpec:
    path = train_verifier(cfg.cache(), base, common.task(cfg), labels, kind, train_cfg)
    return ModelSpec(path, backend="auto", device=base.device, param=f"the {kind.upper()}")


def train_reward_models(cfg, base: ModelSpec, labels: pd.DataFrame) -> tuple[ModelSpec, ModelSpec]:
    """(PRM, ORM): the same base weights, data and recipe; only the targets differ."""
    return tuple(_train(cfg, base, labels, kind, verifier_train_config(cfg)) for kind in ("prm", "orm"))


def reward_models(cfg, base: ModelSpec, policy: ModelSpec, labels: pd.DataFrame | None) -> dict[str, ModelSpec]:
    """The notebook's verifiers: "prm" and "orm" on `base`, "same-size" (the PRM on the policy's own weights), all
    trained on `labels`; with `prm_path`, the open PRM alone as "prm"."""
    if cfg.prm_path:
        return {"prm": cfg.open_prm()}
    prm, orm = train_reward_models(cfg, base, labels)
    return {"prm": prm, "orm": orm, "same-size": same_size_prm(cfg, policy, labels)}


def verifier_record(name: str, verifier: ModelSpec) -> dict:
    """One row of the verifiers table: how a trained verifier was trained (its `train_record`), or an open PRM's
    source and size."""
    if is_open_prm(verifier):
        return {"verifier": name, "path": verifier.path, "backend": verifier.backend,
                "non_embedding_params": open_prm_params(verifier)}
    return {"verifier": name, **train_record(verifier.path)}


POOL_SCORES = {"prm": "scores-prm", "orm": "scores-orm", "same-size": "scores-prm-rung0"}  # cache names


def score_pools(cfg, verifiers: dict[str, ModelSpec], pool: pd.DataFrame, shard: int = 0,
                num_shards: int = 1) -> dict[str, pd.DataFrame]:
    """Verifier name -> the pool scored by it (`score_pool`); with `num_shards` > 1 the scored part of the pool that
    shard `shard` owns (`sampling.shard_chunks` over every verifier's chunks)."""
    counts = [score_chunks(common.test_questions(cfg), pool)] * len(verifiers)
    return {name: score_pool(cfg, v, pool, POOL_SCORES[name], only=only)
            for (name, v), only in zip(verifiers.items(), shard_chunks(counts, shard, num_shards)) if only != []}


def score_pool(cfg, verifier: ModelSpec, pool: pd.DataFrame, name: str, only: list[int] | None = None) -> pd.DataFrame:
    """The pool with the verifier's step scores and every aggregation (last, min, prod) attached."""
    scores = score_solutions(cfg.cache(), verifier, common.task(cfg), common.test_questions(cfg), pool, name=name,
                             only=only)
    return pool.merge(scores, on=["qid", "sample_index"], validate="one_to_one")


SAME_SIZE = "PRM, rung 0 (policy size)"
# the ablations of the default PRM: the same head on the policy's own weights (the paper's set-up, where policy and
# PRM share a base model: searched too), and the usual fine-tuned recipe
ABLATIONS = ((SAME_SIZE, "rung0", {}),
             ("PRM, rung 0, fine-tuned", "rung0-finetune",
              {"head": "finetune", "learning_rate": 5e-4, "max_epochs": 8, "patience": 1}))


def train_prm(cfg, base: ModelSpec, labels: pd.DataFrame) -> ModelSpec:
    """A PRM on `base` with the notebook's recipe, on any label set (e.g. `labels.flip_labels` of the real ones)."""
    return _train(cfg, base, labels, "prm", verifier_train_config(cfg))


def same_size_prm(cfg, policy: ModelSpec, labels: pd.DataFrame) -> ModelSpec:
    """The PRM on the policy's own weights (same recipe and labels as the default PRM)."""
    return _train(cfg, policy, labels, "prm", verifier_train_config(cfg))


def ablation_pools(cfg, policy: ModelSpec, labels: pd.DataFrame | None, pool: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Name -> the pool scored by that ablation's PRM (built on the policy itself); none without labels."""
    if labels is None:
        return {}
    return {name: score_pool(cfg, _train(cfg, policy, labels, "prm", replace(verifier_train_config(cfg), **kw)),
                             pool, f"scores-prm-{tag}")
            for name, tag, kw in ABLATIONS}


def likelihood_pool(cfg, policy: ModelSpec, pool: pd.DataFrame) -> pd.DataFrame:
    """The pool with the policy's own log-likelihood of each sample (a verifier without training)."""
    return pool.merge(policy_logprobs(cfg.cache(), policy, common.task(cfg), common.test_questions(cfg), pool),
                      on=["qid", "sample_index"])


# per-candidate columns of a search run: the results table keeps one row per question, without them
RUN_DETAILS = ["candidates", "answers", "scores", "subtrees"]


@dataclass(frozen=True)
class Setting:
    label: str  # legend entry, e.g. "beam M=4"
    method: str  # plot style key: beam, lookahead, dvts
    search: SearchConfig
    verifier: str = "prm"  # which PRM it searches against: "prm" (the default) or "same-size" (on the policy)

    @property
    def x(self) -> int:
        return self.search.generations


def is_square(n: int) -> bool:
    return math.isqrt(n) ** 2 == n


def search_plan(cfg) -> list[Setting]:
    """Every (setting, budget) of Fig. 3: beam search with M = sqrt N and M = beam_width, lookahead search
    with each k of lookahead_steps (M = sqrt N, and M = beam_width for the deepest k), and DVTS with
    M = beam_width. A lookahead setting with k steps spends N(k+1) generations, so it runs at
    N = budget / (k+1) for the budgets that divide evenly.

    No search runs at budget 1 (one beam and one expansion is one plain sample: the baselines' N=1 point is it).
    M = sqrt N runs only where N is a square (4, 16, 64, 256), so it is never a rounded copy of M = beam_width;
    at N = beam_width**2 the two settings are one run (cached once, drawn on both lines). M = beam_width needs
    N >= beam_width. Building the plan validates every setting, so the notebook calls it before any compute."""
    task = common.task(cfg)
    # a step evaluates one operation of the line above, so it fits in the question line's length (one token per
    # character); longer steps are garbage
    shared = dict(aggregation=cfg.aggregation, temperature=cfg.temperature, max_rounds=cfg.max_rounds,
                  max_step_tokens=task.max_step_tokens(), max_completion_tokens=common.max_new_tokens(cfg))
    out = []
    deepest = max(cfg.lookahead_steps)
    m = cfg.beam_width
    for budget in cfg.search_budgets():
        if budget >= 4 and is_square(budget):
            out.append(Setting("beam M=sqrt N", "beam", SearchConfig("beam", budget, math.isqrt(budget), 0, **shared)))
        if budget >= max(m, 2):
            out.append(Setting(f"beam M={m}", "beam", SearchConfig("beam", budget, m, 0, **shared)))
        if budget >= 2 * m:  # at N = M DVTS is beam search with one subtree
            out.append(Setting(f"DVTS M={m}", "dvts", SearchConfig("dvts", budget, m, 0, **shared)))
        for k in sorted(set(cfg.lookahead_steps)):
            if budget % (k + 1):
                continue
            n = budget // (k + 1)
            if n >= 4 and is_square(n):
                out.append(Setting(f"{k}-step lookahead M=sqrt N", "lookahead",
                                   SearchConfig("beam", n, math.isqrt(n), k, **shared)))
            if k == deepest and n >= max(m, 2) and is_power_of_two(n):
                out.append(Setting(f"{k}-step lookahead M={m}", "lookahead", SearchConfig("beam", n, m, k, **shared)))
        if budget >= max(m, 2) and not cfg.prm_path:  # the paper's set-up: policy and PRM on one base model
            out.append(Setting(f"beam M={m}, same-size PRM", "beam", SearchConfig("beam", budget, m, 0, **shared),
                               verifier="same-size"))
    return out


def search_subset(cfg) -> list:
    """The test questions the searches run on: the first `search_questions` of the test split."""
    return common.test_questions(cfg)[:cfg.search_questions]


def run_search_plan(cfg, policy: ModelSpec, verifiers: dict[str, ModelSpec], settings: list[Setting],
                    progress: bool = True, shard: int = 0, num_shards: int = 1) -> pd.DataFrame:
    """Run every setting for every seed on the search subset against its verifier (`verifiers`: "prm",
    "same-size"); one row per (setting, seed, question) with correct, the measured costs and the x position
    `budget` (the paper's count of generations). With `num_shards` > 1, only the search chunks shard `shard` owns
    (`sampling.shard_chunks` over every run's chunks) are run and returned."""
    problems, task, cache = search_subset(cfg), common.task(cfg), cfg.cache()
    runs = [(s, seed) for s in settings for seed in range(cfg.search_seeds)]
    owned = shard_chunks([len(search_chunks(problems, s.search)) for s, _ in runs], shard, num_shards)

    def run_seed(seed: int) -> int:
        return derive_seed(cfg.seed, "search", seed) % 2**31

    def search_run(s: Setting, seed: int, only: list[int] | None) -> pd.DataFrame:
        return run_search(cache, policy, verifiers[s.verifier], task, problems, s.search, run_seed(seed),
                          progress=False, only=only)

    # the chunks not cached yet go to the workers, the most beams (x lookahead) first; then every run is read
    pending = [(s, seed, c) for (s, seed), only in zip(runs, owned)
               for c in pending_search_chunks(cache, policy, verifiers[s.verifier], task, problems, s.search,
                                              run_seed(seed))
               if only is None or c in only]
    pending.sort(key=lambda j: -j[0].search.generations * len(search_chunks(problems, j[0].search)[j[2]]))
    run_jobs([partial(search_run, s, seed, [c]) for s, seed, c in pending], cfg.cpu_workers(),
             f"search ({len(problems)} questions)", progress)
    frames = [search_run(s, seed, only).drop(columns=RUN_DETAILS).assign(
              label=s.label, style=s.method, search_seed=seed, budget=s.x, verifier=s.verifier)
              for (s, seed), only in zip(runs, owned) if only != []]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def check_unsharded(cfg) -> None:
    """The notebook runs unsharded: a shard only samples (`sample_shard`, called by `python -m ttc_utils.run`)."""
    check(cfg.num_shards == 1, "num_shards", cfg.num_shards,
          "1 in the notebook: a shard of it only samples, run by `python -m ttc_utils.run ... -p num_shards=K`")


def sample_shard(cfg, progress: bool = True) -> dict[str, int]:
    """One batch job's share of the notebook's sampling (`cfg.shard` of `cfg.num_shards`): its chunks of the pool
    scores and of every search run, written to its cache. The ladder and the pool come from notebooks 00-01's cache
    (merged first when they were sharded too). Every shard computes the same labels and verifiers (deterministic; on
    real models the open PRM is loaded); the ablations, results and figures are left to the unsharded run on the
    merged caches."""
    plan = search_plan(cfg)
    whole = type(cfg).from_params({**cfg.as_dict(), "shard": 0, "num_shards": 1})  # the pool is read whole
    with cached_only():
        ladder, _ = common.ladder(cfg)
        pool = pool_stages.sample_pool(whole, ladder, progress=False)
    policy = common.base_policy(cfg, ladder)
    verifiers = reward_models(cfg, verifier_base(cfg, ladder), policy, prm_labels(cfg, policy, progress=progress))
    scored = score_pools(cfg, verifiers, pool, cfg.shard, cfg.num_shards)
    runs = run_search_plan(cfg, policy, verifiers, plan, progress, cfg.shard, cfg.num_shards)
    return {"scored samples": sum(len(f) for f in scored.values()), "search rows": len(runs)}


def results(cfg, pool: pd.DataFrame, pools: dict[str, pd.DataFrame], runs: pd.DataFrame, bins: pd.DataFrame,
            params: dict[str, int]) -> pd.DataFrame:
    """The notebook's one results table (`results.RESULT_COLUMNS` and `scope`), cached: pool selection on all
    questions at every pool budget (scope "pool"); the same on the search subset at the search budgets (scope
    "search": the baselines of Fig. 3) and on the half of the pool the bins never saw (scope "curve half": the
    per-bin baselines); and every search run. `pools`: the pool scored by each verifier of `reward_models` ("prm",
    and where trained "orm" and "same-size"); `params`: non-embedding parameters of "policy" and of each verifier
    (for the measured FLOPs)."""
    subset = {p.qid for p in search_subset(cfg)}
    budgets, search_budgets = cfg.budgets(), cfg.search_budgets()
    half_budgets = [b for b in search_budgets if b in pool_stages.half_budgets(cfg)]
    prm_pool, orm_pool, same_pool = (pools.get(name) for name in ("prm", "orm", "same-size"))

    def sel(frame, rule, setting, score_col=None, verifier=None, scope="pool"):
        if frame is None:  # a verifier this run has not (an open PRM comes without ORM or same-size PRM)
            return None
        at = budgets
        if scope == "search":
            frame, at = frame[frame.qid.isin(subset)], search_budgets
        elif scope == "curve half":
            frame, at = pool_stages.curve_half(cfg, frame), half_budgets
            frame = frame[frame.qid.isin(subset)]
        return selection_results(frame, rule, at, cfg.num_subsets, cfg.seed, setting, score_col, bins,
                                 params["policy"], params.get(verifier)).assign(scope=scope)

    def compute() -> pd.DataFrame:
        return pd.concat([
            sel(pool, "majority", "majority"),
            *[sel(prm_pool, "best_of_n_weighted", f"PRM {how}", how, "prm") for how in ("last", "min", "prod")],
            sel(orm_pool, "best_of_n_weighted", "ORM", "last", "orm"),
            sel(prm_pool, "best_of_n", "PRM best-of-N", cfg.aggregation, "prm"),
            sel(orm_pool, "best_of_n", "ORM best-of-N", "last", "orm"),
            sel(same_pool, "best_of_n_weighted", "PRM last, same-size", cfg.aggregation, "same-size"),
            *[frame for scope in ("search", "curve half") for frame in (
                sel(pool, "majority", "majority", scope=scope),
                sel(prm_pool, "best_of_n_weighted", "best-of-N weighted", cfg.aggregation, "prm", scope),
                sel(same_pool, "best_of_n_weighted", "best-of-N weighted, same-size PRM", cfg.aggregation,
                    "same-size", scope))],
            pd.concat([search_results(runs[runs.verifier == v], bins, params["policy"], params[v])
                       for v in runs.verifier.unique()]).assign(scope="search"),
        ], ignore_index=True)

    inputs = [(pool, ["qid", "text"]), (prm_pool, ["last", "min"]), (orm_pool, ["last"]), (same_pool, ["last"]),
              (runs, ["qid", "correct"])]
    key = {"config": cfg.cache_key(), "params": params,
           "inputs": [pd.util.hash_pandas_object(f[cols], index=False).sum().item() for f, cols in inputs
                      if f is not None]}
    return cfg.cache().table("results-02_prm_search", key, compute)


def per_bin_rows(cfg, results: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """The rows of the per-bin comparison (Fig. 3 right) at `budgets`: majority and best-of-N weighted on the pool
    half the bins never saw, beam search M = beam_width on the search subset."""
    beam = f"beam M={cfg.beam_width}"
    rows = results[((results.scope == "curve half") & results.setting.isin(["majority", "best-of-N weighted"]))
                   | ((results.scope == "search") & (results.setting == beam))]
    return rows[rows.budget.isin(budgets)]


def cost_table(searched: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """Per search setting and budget: mean measured costs per question, and its verifier calls and FLOPs relative to
    best-of-N weighted at the same budget."""
    cols = ["policy_tokens", "prefill_tokens", "verifier_tokens", "verifier_calls", "flops"]
    search_only = searched[~searched.method.isin(["majority", "best_of_n_weighted"])]
    cost = search_only.groupby(["setting", "budget"], as_index=False)[cols].mean()
    bon = searched[searched.setting == "best-of-N weighted"].groupby("budget")[["verifier_calls", "flops"]].mean()
    cost = cost.assign(calls_vs_bon=cost.verifier_calls / cost.budget.map(bon.verifier_calls),
                       flops_vs_bon=cost.flops / cost.budget.map(bon.flops))
    return cost[cost.budget.isin(budgets)]


def claims(cfg, settings: list[Setting]) -> list[Claim]:
    """The paper's findings of §5 as paired comparisons on the results table (`findings`): each is "first arm beats
    the second" on the same questions, each question's accuracy averaged over the search seeds. Budgets: small = 4,
    large = the largest search budget; pool claims at N = 64 (or the pool's largest budget) and the pool size;
    per-bin claims on the curve half's largest budget, easy = bins 1-2, hard = the top two bins."""
    m, top, agg = cfg.beam_width, cfg.max_budget, cfg.aggregation
    small = min(4, top)
    n64 = min(64, cfg.pool_size)
    labels = {(s.label, s.x) for s in settings}
    pool, search, half = ({"scope": s} for s in ("pool", "search", "curve half"))

    def arm(setting, budget, where, bins=None):
        return Arm(setting=setting, budget=budget, where=where, bin=bins)

    beam, bon = f"beam M={m}", "best-of-N weighted"
    out = [
        Claim(f"PRM best-of-N weighted beats majority (N={n64})", arm(f"PRM {agg}", n64, pool),
              arm("majority", n64, pool)),
        Claim(f"beam search (M={m}) beats best-of-N weighted at a small budget (N={small})",
              arm(beam, small, search), arm(bon, small, search)),
        Claim(f"beam search's edge over best-of-N weighted shrinks from N={small} to N={top}",
              arm(beam, small, search), arm(bon, small, search), then=(arm(beam, top, search), arm(bon, top, search))),
    ]
    for label in dict.fromkeys(s.label for s in settings if s.method == "lookahead"):
        at = max(x for lab, x in labels if lab == label)
        if (beam, at) in labels:
            out.append(Claim(f"beam search (M={m}) beats {label} at the same budget ({at} generations)",
                             arm(beam, at, search), arm(label, at, search)))
    easy, hard = (1, 2), (cfg.num_bins - 1, cfg.num_bins)
    bin_budget = max(b for b in pool_stages.half_budgets(cfg) if b <= top)
    out += [
        Claim(f"at a large budget (N={bin_budget}) beam search hurts easy questions: best-of-N weighted beats it on "
              f"bins {easy[0]}-{easy[1]}", arm(bon, bin_budget, half, easy), arm(beam, bin_budget, search, easy)),
        Claim(f"at N={small} beam search helps hard questions (bins {hard[0]}-{hard[1]}) more than easy ones",
              arm(beam, small, search, hard), arm(bon, small, half, hard),
              then=(arm(beam, small, search, easy), arm(bon, small, half, easy))),
        Claim(f"PRM beats ORM in best-of-N weighted (N={cfg.pool_size})", arm(f"PRM {agg}", cfg.pool_size, pool),
              arm("ORM", cfg.pool_size, pool)),
        Claim(f"PRM's edge over ORM grows from N={small} to N={cfg.pool_size}",
              arm(f"PRM {agg}", cfg.pool_size, pool), arm("ORM", cfg.pool_size, pool),
              then=(arm(f"PRM {agg}", small, pool), arm("ORM", small, pool))),
        *[Claim(f"'last' aggregation beats '{how}' (N={n64})", arm("PRM last", n64, pool), arm(f"PRM {how}", n64, pool))
          for how in ("min", "prod")],
        Claim(f"best-of-N weighted beats plain best-of-N with the PRM (N={n64})", arm(f"PRM {agg}", n64, pool),
              arm("PRM best-of-N", n64, pool)),
        Claim(f"with the same-size PRM (the paper's set-up) beam search beats best-of-N weighted (N={small})",
              arm(f"{beam}, same-size PRM", small, search), arm("best-of-N weighted, same-size PRM", small, search)),
        Claim(f"the larger-rung PRM beats the same-size PRM in best-of-N weighted (N={n64}; not a paper claim: "
              f"why the default PRM reads a larger rung)", arm(f"PRM {agg}", n64, pool),
              arm("PRM last, same-size", n64, pool)),
    ]
    if cfg.prm_path:  # an open PRM alone: no ORM or same-size PRM to compare with
        trained_only = ("ORM", "PRM last, same-size", f"{beam}, same-size PRM")
        out = [c for c in out if not {a.setting for a in c.arms()} & set(trained_only)]
    return out
