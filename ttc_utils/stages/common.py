"""Stages every notebook shares: the task, its test questions, the policy ladder and the base policy.

The ladder is the embedded world's, trained here (notebook 00), unless `ladder_paths` names real models: then it is
those models, smallest first, counted from their configs and never trained."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from ..model_spec import ModelSpec
from ..models import params_from_config
from ..tasks import Task, get_task
from ..training import train_ladder

_TASKS: dict[tuple, Task] = {}
_TEST: dict[tuple, tuple] = {}


def _task_key(cfg) -> tuple:
    return cfg.task, repr(sorted(cfg.task_kwargs().items()))


def task(cfg) -> Task:
    """The profile's task (`task`: the embedded world with its knobs, or MATH-500), built once per process: a MATH
    task reads its file on first use."""
    key = _task_key(cfg)
    if key not in _TASKS:
        _TASKS[key] = get_task(cfg.task, **cfg.task_kwargs())
    return _TASKS[key]


def test_questions(cfg) -> list:
    """The profile's test split: `num_test` distinct questions, the same in every notebook; drawn once per process
    (a notebook's stages ask for it ~20 times, and drawing the world's split takes ~0.1 s each time)."""
    key = (_task_key(cfg), cfg.num_test, cfg.seed)
    if key not in _TEST:
        _TEST[key] = tuple(task(cfg).problems("test", cfg.num_test, cfg.seed))
    return list(_TEST[key])


def ladder(cfg, threads: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(models table, loss curves) of the policy ladder, trained once and cached (notebook 00) on `threads` torch
    threads (0: all; see `TrainConfig.threads`); with `ladder_paths`, the given models (name, path,
    non_embedding_params) and no curves. Either way every rung samples through `policy_backend` (column `backend`)."""
    if cfg.ladder_paths:
        table = pd.DataFrame([{"name": ModelSpec(p).name, "path": p, "non_embedding_params": params_from_config(p)}
                              for p in cfg.ladder_paths])
        curves = pd.DataFrame(columns=["name", "non_embedding_params"])
    else:
        table, curves = train_ladder(cfg.cache(), cfg.world(), cfg.sizes(), replace(cfg.train(), threads=threads),
                                     device=cfg.device)
    return table.assign(backend=cfg.policy_backend), curves


def base_policy(cfg, ladder: pd.DataFrame) -> ModelSpec:
    """`policy_path` if given, else the ladder's smallest rung (the base policy), sampling through `policy_backend`."""
    path = cfg.policy_path or str(ladder.path.iloc[0])
    return ModelSpec(path, backend=cfg.policy_backend, device=cfg.device,
                     param="policy_path" if cfg.policy_path else "the base policy")


def rung(cfg, ladder: pd.DataFrame, index: int, param: str) -> ModelSpec:
    """Ladder rung `index` as a model on the profile's device (loaded by transformers: a verifier's backbone)."""
    return ModelSpec(str(ladder.path.iloc[index]), device=cfg.device, param=param)


def max_new_tokens(cfg) -> int:
    # a correct solution and its eos always fit; longer samples are garbage and only cost time
    return cfg.max_new_tokens or task(cfg).max_solution_tokens() + 1
