"""Profiles and parameter validation: one frozen config object per notebook, checked before any compute.

A notebook's `parameters` cell holds literals only; its next cell passes them all to the notebook's
config class, which raises a clear error naming the parameter and what is allowed. Profiles are
papermill parameter files, `notebooks/params/<profile>.yaml`, with a `common` section shared by all
notebooks and one section per notebook.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from .cache import Cache
from .models import ModelSize, check_model_path
from .training import TrainConfig
from .world import WorldConfig

PROFILES = ("smoke", "default")
PARAMS_DIR = Path(__file__).resolve().parent.parent / "notebooks" / "params"


def check(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: expected {allowed}")


def check_int(name: str, value, lo: int = 1) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value >= lo, name, value, f"an int >= {lo}")


def load_profile(profile: str, notebook: str) -> dict:
    """The papermill parameters of `notebook` (e.g. '00_world') under `profile`: common + its section."""
    check(profile in PROFILES, "profile", profile, f"one of {PROFILES}")
    raw = yaml.safe_load((PARAMS_DIR / f"{profile}.yaml").read_text())
    return {**raw.get("common", {}), **raw.get(notebook, {})}


@dataclass(frozen=True)
class SuiteConfig:
    """Parameters every notebook shares: the profile, the seed, the world, the policy ladder, the test set."""
    profile: str  # names the cache folder data/cache/<profile>; one of PROFILES
    seed: int  # drives the world, the corpus order, initialisation and sampling
    min_steps: int  # fewest operations per question
    max_steps: int  # most operations per question
    modulus: int  # every intermediate result is taken modulo this
    max_operand: int  # largest operand of + and -
    max_multiplier: int  # largest operand of *
    ops: str  # operation mix
    ladder_hidden: list  # widths of the ladder's rungs
    ladder_layers: list  # depths of the ladder's rungs (same length as ladder_hidden)
    train_tokens: int  # pretraining tokens every rung sees
    batch_size: int  # problems per optimizer step
    learning_rate: float  # peak learning rate
    num_test: int  # test questions every notebook evaluates on
    policy_path: str  # "" = the smallest rung (the base policy); else a model folder or hub id
    data_dir: str  # holds cache/<profile>/
    figures_dir: str  # where figures are written

    def __post_init__(self):
        check(self.profile in PROFILES, "profile", self.profile, f"one of {PROFILES}")
        check_int("seed", self.seed, lo=0)
        for name in ("train_tokens", "batch_size", "num_test"):
            check_int(name, getattr(self, name))
        check(isinstance(self.ladder_hidden, list) and len(self.ladder_hidden) >= 2
              and all(isinstance(h, int) and h >= 16 and h % 16 == 0 for h in self.ladder_hidden),
              "ladder_hidden", self.ladder_hidden, "a list of >= 2 widths, each a multiple of 16")
        check(isinstance(self.ladder_layers, list) and len(self.ladder_layers) == len(self.ladder_hidden)
              and all(isinstance(x, int) and x >= 1 for x in self.ladder_layers),
              "ladder_layers", self.ladder_layers, f"a list of {len(self.ladder_hidden)} ints >= 1")
        if self.policy_path:
            check_model_path("policy_path", self.policy_path)
        self.world()  # validates the world's own fields
        self.train()

    @classmethod
    def from_params(cls, params: dict):
        """From a dict of exactly the config's fields; unknown or missing names are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - names)
        check(not unknown, "parameters", unknown, f"names among {sorted(names)}")
        missing = sorted(names - set(params))
        check(not missing, "parameters", missing, "all parameters to be given")
        return cls(**params)

    @classmethod
    def from_globals(cls, ns: dict):
        """From a notebook's namespace: picks the config's fields out of `globals()`."""
        return cls.from_params({f.name: ns[f.name] for f in fields(cls) if f.name in ns})

    def world(self) -> WorldConfig:
        return WorldConfig(min_steps=self.min_steps, max_steps=self.max_steps, modulus=self.modulus,
                           max_operand=self.max_operand, max_multiplier=self.max_multiplier, ops=self.ops)

    def sizes(self) -> list[ModelSize]:
        # 16-wide heads, as in the measured base (width 64, 4 heads)
        return [ModelSize(h, l, h // 16) for h, l in zip(self.ladder_hidden, self.ladder_layers)]

    def train(self) -> TrainConfig:
        return TrainConfig(tokens=self.train_tokens, batch_size=self.batch_size,
                           learning_rate=self.learning_rate, seed=self.seed)

    def cache(self) -> Cache:
        return Cache(Path(self.data_dir) / "cache" / self.profile)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WorldNotebookConfig(SuiteConfig):
    """Parameters of notebooks/00_world.ipynb (the world, the policy ladder, the base policy's pass@1)."""
    samples_per_question: int = 64  # samples per test question for the base policy's pass@1
    temperature: float = 1.0  # sampling temperature for pass@1

    def __post_init__(self):
        super().__post_init__()
        check_int("samples_per_question", self.samples_per_question)
        check(isinstance(self.temperature, (int, float)) and self.temperature > 0, "temperature",
              self.temperature, "a float > 0")


@dataclass(frozen=True)
class PoolNotebookConfig(SuiteConfig):
    """Parameters of notebooks/01_difficulty_bins.ipynb (the sample pool, estimators, oracle bins)."""
    pool_size: int = 256  # samples per test question in the pool (the paper: 2048)
    temperature: float = 1.0  # sampling temperature of the pool
    num_bins: int = 5  # oracle difficulty bins (quantiles of the base policy's pass@1)
    num_subsets: int = 200  # random subsets per budget for the subset-averaged estimators
    ladder_samples: int = 16  # samples per question for each ladder model's sampled pass@1
    shard: int = 0  # which shard of the questions this run samples (0 <= shard < num_shards)
    num_shards: int = 1  # question shards run as separate jobs; 1 = everything in one run

    def __post_init__(self):
        super().__post_init__()
        for name in ("pool_size", "num_subsets", "ladder_samples", "num_shards"):
            check_int(name, getattr(self, name))
        check(isinstance(self.num_bins, int) and not isinstance(self.num_bins, bool)
              and 1 <= self.num_bins <= min(10, self.num_test), "num_bins", self.num_bins,
              f"an int in [1, {min(10, self.num_test)}]")
        check(isinstance(self.shard, int) and 0 <= self.shard < self.num_shards, "shard", self.shard,
              f"an int in [0, num_shards={self.num_shards})")
        check(isinstance(self.temperature, (int, float)) and self.temperature > 0, "temperature",
              self.temperature, "a float > 0")

    def budgets(self) -> list[int]:
        """Generation budgets 2^0 ... up to the pool size."""
        return [2 ** i for i in range(self.pool_size.bit_length()) if 2 ** i <= self.pool_size]
