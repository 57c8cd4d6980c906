"""Notebook 02's stages: PRM labels, the PRM and ORM (and two ablations), pool scores, the search grid, and the
results table that every curve and finding of the notebook is read from.

    labels = prm_labels(cfg, policy)                             # Monte Carlo soft labels (training split)
    prm, orm = train_reward_models(cfg, verifier_base(cfg, ladder), labels)   # two ModelSpecs
    scores = score_pool(cfg, prm, pool, "scores-prm")            # the pool with last / min / prod per sample
    runs = run_search_plan(cfg, policy, prm, search_plan(cfg))   # one row per (setting, budget, seed, question)
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from ..labels import mc_labels
from ..model_spec import ModelSpec
from ..policy import SamplingParams, derive_seed
from ..results import search_results, selection_results
from ..scoring import policy_logprobs, score_solutions
from ..search import SearchConfig, run_search, sqrt_width
from ..verifier_training import VerifierTrainConfig, train_verifier
from . import common


def prm_train_questions(cfg) -> list:
    """Training-split questions for the PRM's labels (disjoint from the test split by construction)."""
    return common.task(cfg).problems("train", cfg.prm_questions, derive_seed(cfg.seed, "prm") % 2**31)


def prm_labels(cfg, policy: ModelSpec, progress: bool = True) -> pd.DataFrame:
    params = SamplingParams(n=cfg.prm_samples, temperature=cfg.temperature, max_new_tokens=common.max_new_tokens(cfg))
    return mc_labels(cfg.cache(), policy, common.task(cfg), prm_train_questions(cfg), params, cfg.prm_rollouts,
                     cfg.seed, progress=progress)


def verifier_train_config(cfg) -> VerifierTrainConfig:
    return VerifierTrainConfig(head=cfg.verifier_head, learning_rate=cfg.verifier_learning_rate,
                               batch_size=cfg.verifier_batch_size, max_epochs=cfg.verifier_epochs, seed=cfg.seed)


def verifier_base(cfg, ladder: pd.DataFrame) -> ModelSpec:
    """The model the PRM and ORM are built on: ladder rung `verifier_rung` (0 is the base policy).

    Why a larger rung by default: in this world checking a step is recomputing it, so a verifier of the
    policy's own size only knows what the policy knows (the notebook measures both)."""
    if cfg.verifier_rung == 0:
        return common.base_policy(cfg, ladder)
    return common.rung(cfg, ladder, cfg.verifier_rung, "verifier_rung")


def _train(cfg, base: ModelSpec, labels: pd.DataFrame, kind: str, train_cfg: VerifierTrainConfig) -> ModelSpec:
    path = train_verifier(cfg.cache(), base, common.task(cfg), labels, kind, train_cfg)
    return ModelSpec(path, backend="auto", device=base.device, param=f"the {kind.upper()}")


def train_reward_models(cfg, base: ModelSpec, labels: pd.DataFrame) -> tuple[ModelSpec, ModelSpec]:
    """(PRM, ORM): the same base weights, data and recipe; only the targets differ."""
    return tuple(_train(cfg, base, labels, kind, verifier_train_config(cfg)) for kind in ("prm", "orm"))


def score_pool(cfg, verifier: ModelSpec, pool: pd.DataFrame, name: str) -> pd.DataFrame:
    """The pool with the verifier's step scores and every aggregation (last, min, prod) attached."""
    scores = score_solutions(cfg.cache(), verifier, common.task(cfg), common.test_questions(cfg), pool, name=name)
    return pool.merge(scores, on=["qid", "sample_index"], validate="one_to_one")


# the ablations of the default PRM: the same head on the policy's own weights, and the usual fine-tuned recipe
ABLATIONS = (("PRM, rung 0 (policy size)", "rung0", {}),
             ("PRM, rung 0, fine-tuned", "rung0-finetune",
              {"head": "finetune", "learning_rate": 5e-4, "max_epochs": 8, "patience": 1}))


def ablation_pools(cfg, policy: ModelSpec, labels: pd.DataFrame, pool: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Name -> the pool scored by that ablation's PRM (built on the policy itself)."""
    return {name: score_pool(cfg, _train(cfg, policy, labels, "prm", replace(verifier_train_config(cfg), **kw)),
                             pool, f"scores-prm-{tag}")
            for name, tag, kw in ABLATIONS}


def likelihood_pool(cfg, policy: ModelSpec, pool: pd.DataFrame) -> pd.DataFrame:
    """The pool with the policy's own log-likelihood of each sample (a verifier without training)."""
    return pool.merge(policy_logprobs(cfg.cache(), policy, common.task(cfg), common.test_questions(cfg), pool),
                      on=["qid", "sample_index"])


@dataclass(frozen=True)
class Setting:
    label: str  # legend entry, e.g. "beam M=4"
    method: str  # plot style key: beam, lookahead, dvts
    search: SearchConfig

    @property
    def x(self) -> int:
        return self.search.generations


def search_plan(cfg) -> list[Setting]:
    """Every (setting, budget) of Fig. 3: beam search with M = sqrt N and M = beam_width, lookahead search
    with each k of lookahead_steps (M = sqrt N, and M = beam_width for the deepest k), and DVTS with
    M = beam_width. A lookahead setting with k steps spends N(k+1) generations, so it runs at
    N = budget / (k+1) for the budgets that divide evenly. M = N where N < M (one beam kept).
    Building it validates every setting, so the notebook calls it before any compute."""
    task = common.task(cfg)
    # a step evaluates one operation of the line above, so it fits in the question line's length (one token per
    # character); longer steps are garbage
    shared = dict(aggregation=cfg.aggregation, temperature=cfg.temperature, max_rounds=cfg.max_rounds,
                  max_step_tokens=task.max_step_tokens(), max_completion_tokens=common.max_new_tokens(cfg))
    out = []
    deepest = max(cfg.lookahead_steps)
    for budget in cfg.search_budgets():
        out.append(Setting("beam M=sqrt N", "beam", SearchConfig("beam", budget, sqrt_width(budget), 0, **shared)))
        out.append(Setting(f"beam M={cfg.beam_width}", "beam",
                           SearchConfig("beam", budget, min(cfg.beam_width, budget), 0, **shared)))
        out.append(Setting(f"DVTS M={cfg.beam_width}", "dvts",
                           SearchConfig("dvts", budget, min(cfg.beam_width, budget), 0, **shared)))
        for k in sorted(set(cfg.lookahead_steps)):
            if k == 0 or budget % (k + 1) or budget // (k + 1) < 1:
                continue
            n = budget // (k + 1)
            if n & (n - 1):
                continue
            out.append(Setting(f"{k}-step lookahead M=sqrt N", "lookahead",
                               SearchConfig("beam", n, sqrt_width(n), k, **shared)))
            if k == deepest:
                out.append(Setting(f"{k}-step lookahead M={cfg.beam_width}", "lookahead",
                                   SearchConfig("beam", n, min(cfg.beam_width, n), k, **shared)))
    return out


def search_subset(cfg) -> list:
    """The test questions the searches run on: the first `search_questions` of the test split."""
    return common.test_questions(cfg)[:cfg.search_questions]


def run_search_plan(cfg, policy: ModelSpec, verifier: ModelSpec, settings: list[Setting],
                    progress: bool = True) -> pd.DataFrame:
    """Run every setting for every seed on the search subset; one row per (setting, seed, question) with
    correct, the measured costs and the x position `budget` (the paper's count of generations)."""
    problems, task = search_subset(cfg), common.task(cfg)
    frames = []
    for s in settings:
        for seed in range(cfg.search_seeds):
            r = run_search(cfg.cache(), policy, verifier, task, problems, s.search,
                           derive_seed(cfg.seed, "search", seed) % 2**31, progress=progress)
            frames.append(r.drop(columns=["candidates", "answers", "scores", "subtrees"]).assign(
                label=s.label, style=s.method, search_seed=seed, budget=s.x))
    return pd.concat(frames, ignore_index=True)


def results(cfg, pool: pd.DataFrame, prm_pool: pd.DataFrame, orm_pool: pd.DataFrame, runs: pd.DataFrame,
            bins: pd.DataFrame) -> pd.DataFrame:
    """The notebook's one results table (`results.RESULT_COLUMNS`), cached: pool selection on all questions at
    every pool budget, the same on the search subset at the search budgets (the baselines of Fig. 3), and every
    search run."""
    subset = {p.qid for p in search_subset(cfg)}
    budgets, search_budgets = cfg.budgets(), cfg.search_budgets()

    def sel(frame, rule, setting, score_col=None, qids=None, at=budgets, scope="pool"):
        frame = frame if qids is None else frame[frame.qid.isin(qids)]
        return selection_results(frame, rule, at, cfg.num_subsets, cfg.seed, setting, score_col, bins).assign(
            scope=scope)

    def compute() -> pd.DataFrame:
        return pd.concat([
            sel(pool, "majority", "majority"),
            *[sel(prm_pool, "best_of_n_weighted", f"PRM {how}", how) for how in ("last", "min", "prod")],
            sel(orm_pool, "best_of_n_weighted", "ORM", "last"),
            sel(prm_pool, "best_of_n", "PRM best-of-N", cfg.aggregation),
            sel(orm_pool, "best_of_n", "ORM best-of-N", "last"),
            sel(pool, "majority", "majority", qids=subset, at=search_budgets, scope="search"),
            sel(prm_pool, "best_of_n_weighted", "best-of-N weighted", cfg.aggregation, subset, search_budgets,
                "search"),
            search_results(runs, bins).assign(scope="search"),
        ], ignore_index=True)

    key = {"config": cfg.as_dict(), "inputs": [pd.util.hash_pandas_object(f[cols], index=False).sum().item()
                                              for f, cols in ((pool, ["qid", "text"]), (prm_pool, ["last", "min"]),
                                                              (orm_pool, ["last"]), (runs, ["qid", "correct"]))]}
    return cfg.cache().table("results-02_prm_search", key, compute)
