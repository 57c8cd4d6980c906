"""Notebook 02's pipeline on one config: PRM labels, the PRM and ORM, pool scores, and the search grid.

Each function is a cached stage, so the notebook reads as the paper's §5 and a rerun only redraws.

    labels = prm_labels(cfg, policy_path)                        # Monte Carlo soft labels (training split)
    prm, orm = train_reward_models(cfg, verifier_base_path(cfg, ladder), labels)   # two model folders
    scores = score_pool(cfg, prm, pool)                          # last / min / prod per pool sample
    runs = run_search_plan(cfg, policy_path, prm)                # one row per (setting, budget, seed, question)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .policy import SamplingParams, derive_seed
from .pool import base_policy_path, test_questions
from .prm import VerifierTrainConfig, mc_labels, score_solutions, train_verifier
from .search import SearchConfig, run_search, sqrt_width
from .world import Problem, generate, max_line_chars, max_solution_chars


def prm_train_questions(cfg) -> list[Problem]:
    """Training-split questions for the PRM's labels (disjoint from the test split by construction)."""
    return generate(cfg.world(), cfg.prm_questions, "train", derive_seed(cfg.seed, "prm") % 2**31)


def prm_labels(cfg, policy_path: str, progress: bool = True) -> pd.DataFrame:
    params = SamplingParams(n=cfg.prm_samples, temperature=cfg.temperature,
                            max_new_tokens=max_solution_chars(cfg.world()) + 1)
    return mc_labels(cfg.cache(), policy_path, prm_train_questions(cfg), params, cfg.prm_rollouts, cfg.seed,
                     progress=progress)


def verifier_train_config(cfg) -> VerifierTrainConfig:
    return VerifierTrainConfig(head=cfg.verifier_head, learning_rate=cfg.verifier_learning_rate,
                               batch_size=cfg.verifier_batch_size, max_epochs=cfg.verifier_epochs, seed=cfg.seed)


def verifier_base_path(cfg, ladder: pd.DataFrame) -> str:
    """The model the PRM and ORM are built on: ladder rung `verifier_rung` (0 is the base policy).

    Why a larger rung by default: in this world checking a step is recomputing it, so a verifier of the
    policy's own size only knows what the policy knows (the notebook measures both)."""
    return base_policy_path(cfg, ladder) if cfg.verifier_rung == 0 else str(ladder.path.iloc[cfg.verifier_rung])


def train_reward_models(cfg, base_path: str, labels: pd.DataFrame, disable_tqdm: bool | None = None
                        ) -> tuple[str, str]:
    """(PRM folder, ORM folder): the same base weights, data and recipe; only the targets differ."""
    tc = verifier_train_config(cfg)
    return tuple(train_verifier(cfg.cache(), base_path, labels, kind, tc, disable_tqdm) for kind in ("prm", "orm"))


def score_pool(cfg, verifier_path: str, pool: pd.DataFrame, name: str) -> pd.DataFrame:
    """The pool with the verifier's step scores and every aggregation (last, min, prod) attached."""
    scores = score_solutions(cfg.cache(), verifier_path, test_questions(cfg), pool, name=name)
    return pool.merge(scores, on=["qid", "sample_index"], validate="one_to_one")


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
    N = budget / (k+1) for the budgets that divide evenly. M = N where N < M (one beam kept)."""
    # a step evaluates one operation of the line above, so it and its newline fit in the question line's
    # length (one token per character); longer steps are garbage
    common = dict(aggregation=cfg.aggregation, temperature=cfg.temperature, max_rounds=cfg.max_rounds,
                  max_step_tokens=max_line_chars(cfg.world()),
                  max_completion_tokens=max_solution_chars(cfg.world()) + 1)
    out = []
    deepest = max(cfg.lookahead_steps)
    for budget in cfg.search_budgets():
        out.append(Setting("beam M=sqrt N", "beam", SearchConfig("beam", budget, sqrt_width(budget), 0, **common)))
        out.append(Setting(f"beam M={cfg.beam_width}", "beam",
                           SearchConfig("beam", budget, min(cfg.beam_width, budget), 0, **common)))
        out.append(Setting(f"DVTS M={cfg.beam_width}", "dvts",
                           SearchConfig("dvts", budget, min(cfg.beam_width, budget), 0, **common)))
        for k in sorted(set(cfg.lookahead_steps)):
            if k == 0 or budget % (k + 1) or budget // (k + 1) < 1:
                continue
            n = budget // (k + 1)
            if n & (n - 1):
                continue
            out.append(Setting(f"{k}-step lookahead M=sqrt N", "lookahead",
                               SearchConfig("beam", n, sqrt_width(n), k, **common)))
            if k == deepest:
                out.append(Setting(f"{k}-step lookahead M={cfg.beam_width}", "lookahead",
                                   SearchConfig("beam", n, min(cfg.beam_width, n), k, **common)))
    return out


def search_subset(cfg) -> list[Problem]:
    return test_questions(cfg)[:cfg.search_questions]


def run_search_plan(cfg, policy_path: str, verifier_path: str, settings: list[Setting] | None = None,
                    progress: bool = True) -> pd.DataFrame:
    """Run every setting for every seed on the search subset; one row per (setting, seed, question) with
    correct, the measured costs and the x position `generations` (the paper's count)."""
    problems = search_subset(cfg)
    frames = []
    for s in settings if settings is not None else search_plan(cfg):
        for seed in range(cfg.search_seeds):
            r = run_search(cfg.cache(), policy_path, verifier_path, problems, s.search,
                           derive_seed(cfg.seed, "search", seed) % 2**31, progress=progress)
            frames.append(r.drop(columns=["candidates", "answers", "scores", "subtrees"]).assign(
                label=s.label, style=s.method, search_seed=seed, budget=s.x))
    return pd.concat(frames, ignore_index=True)


def accounted_budget(budget, uses_verifier, accounting: str):
    """The x position of a point: arXiv v1 counts generations only; ICLR also counts one generation per
    verifier call, which doubles the cost of every verifier-based method (one doubling to the right)."""
    return np.where(np.asarray(uses_verifier) & (accounting == "iclr"), np.asarray(budget) * 2, budget)


def per_question(runs: pd.DataFrame) -> pd.DataFrame:
    """Search accuracy per (label, style, budget, qid), averaged over search seeds: the input of
    `estimators.curve_summary` (columns budget, accuracy)."""
    return (runs.groupby(["label", "style", "budget", "qid"], as_index=False)
            .agg(accuracy=("correct", "mean"), policy_tokens=("policy_tokens", "mean"),
                 verifier_tokens=("verifier_tokens", "mean"), generations=("generations", "first")))
