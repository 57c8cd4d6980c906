"""Notebook 00's stages: the ladder's greedy accuracy per chain length, the base policy's pass@1 samples, and the
validity criteria of every validity seed's world."""
from __future__ import annotations

from functools import partial

import pandas as pd

from ..cache import MissingArtifact, cached_only
from ..evaluation import greedy_accuracy, greedy_samples
from ..policy import SamplingParams
from ..sampling import sample_problems
from ..validity import criteria_table
from ..workers import run_jobs
from . import common


def ladder_greedy_accuracy(cfg, ladder: pd.DataFrame) -> pd.DataFrame:
    """Greedy accuracy of every rung per number of steps in the question (cached samples)."""
    return greedy_accuracy(cfg.cache(), ladder, common.task(cfg), common.test_questions(cfg), cfg.seed,
                           common.max_new_tokens(cfg), device=cfg.device)


def base_samples(cfg, ladder: pd.DataFrame) -> pd.DataFrame:
    """`samples_per_question` samples of the base policy per test question, graded (its pass@1 histogram)."""
    params = SamplingParams(n=cfg.samples_per_question, temperature=cfg.temperature,
                            max_new_tokens=common.max_new_tokens(cfg))
    return sample_problems(cfg.cache(), common.base_policy(cfg, ladder), common.task(cfg),
                           common.test_questions(cfg), params, cfg.seed)


def criteria(cfg, seed: int) -> pd.DataFrame:
    """The world's validity criteria (`validity.criteria_table`) at `seed`: its own world, ladder (trained and cached
    like seed `cfg.seed`'s; another seed's on one torch thread, see `validity_criteria`), test questions and base-policy
    samples."""
    c = cfg if seed == cfg.seed else type(cfg).from_params({**cfg.as_dict(), "seed": seed})
    ladder, _ = common.ladder(c, threads=0 if seed == cfg.seed else 1)
    task, test = common.task(c), common.test_questions(c)
    by_rung = {m.name: s for m, s in greedy_samples(c.cache(), ladder, task, test, c.seed, common.max_new_tokens(c),
                                                    c.device)}
    table = criteria_table(task, test, base_samples(c, ladder), ladder, by_rung, seed=c.seed)
    return table.assign(seed=seed)


def validity_criteria(cfg, progress: bool = True) -> pd.DataFrame:
    """`criteria` of every validity seed, one table. The seeds other than `cfg.seed` whose worlds are not cached yet
    are trained and sampled first, side by side (`workers.run_jobs`). Their ladders train on one torch thread each,
    wherever they run, so they never depend on `workers`; two such ladders at once took 16 min, one ladder on two
    threads 10."""
    tables: dict[int, pd.DataFrame] = {}
    for seed in cfg.validity_seeds:
        if seed != cfg.seed:
            try:
                with cached_only():
                    tables[seed] = criteria(cfg, seed)
            except MissingArtifact:
                pass
    pending = [s for s in cfg.validity_seeds if s != cfg.seed and s not in tables]
    run_jobs([partial(criteria, cfg, s) for s in pending], cfg.cpu_workers(), "validity seeds", progress)
    return pd.concat([tables[s] if s in tables else criteria(cfg, s) for s in cfg.validity_seeds], ignore_index=True)
