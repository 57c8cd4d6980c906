"""Stages every notebook shares: the task, its test questions, the policy ladder and the base policy."""
from __future__ import annotations

import pandas as pd

from ..model_spec import ModelSpec
from ..tasks.arithmetic import ArithmeticTask
from ..training import train_ladder


def task(cfg) -> ArithmeticTask:
    """The profile's task: the embedded arithmetic world with the profile's knobs."""
    return ArithmeticTask(cfg.world())


def test_questions(cfg) -> list:
    """The profile's test split: `num_test` distinct questions, the same in every notebook."""
    return task(cfg).problems("test", cfg.num_test, cfg.seed)


def ladder(cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(models table, loss curves) of the policy ladder, trained once and cached (notebook 00)."""
    return train_ladder(cfg.cache(), cfg.world(), cfg.sizes(), cfg.train(), device=cfg.device)


def base_policy(cfg, ladder: pd.DataFrame) -> ModelSpec:
    """`policy_path` if given, else the ladder's smallest rung (the base policy)."""
    if cfg.policy_path:
        return ModelSpec(cfg.policy_path, device=cfg.device, param="policy_path")
    return rung(cfg, ladder, 0, "the base policy")


def rung(cfg, ladder: pd.DataFrame, index: int, param: str) -> ModelSpec:
    """Ladder rung `index` as a model on the profile's device."""
    return ModelSpec(str(ladder.path.iloc[index]), device=cfg.device, param=param)


def max_new_tokens(cfg) -> int:
    # a correct solution and its eos always fit; longer samples are garbage and only cost time
    return task(cfg).max_solution_tokens() + 1
