"""Notebook 00's stages: the ladder's greedy accuracy per chain length, and the base policy's pass@1 samples."""
from __future__ import annotations

import pandas as pd

from ..evaluation import greedy_accuracy, greedy_samples
from ..policy import SamplingParams
from ..sampling import sample_problems
from ..validity import criteria_table
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
    like seed `cfg.seed`'s), test questions and base-policy samples."""
    c = cfg if seed == cfg.seed else type(cfg).from_params({**cfg.as_dict(), "seed": seed})
    ladder, _ = common.ladder(c)
    task, test = common.task(c), common.test_questions(c)
    by_rung = {m.name: s for m, s in greedy_samples(c.cache(), ladder, task, test, c.seed, common.max_new_tokens(c),
                                                    c.device)}
    table = criteria_table(task, test, base_samples(c, ladder), ladder, by_rung, seed=c.seed)
    return table.assign(seed=seed)
