"""Notebook 00's stages: the ladder's greedy accuracy per chain length, and the base policy's pass@1 samples."""
from __future__ import annotations

import pandas as pd

from ..evaluation import greedy_accuracy
from ..policy import SamplingParams
from ..sampling import sample_problems
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
