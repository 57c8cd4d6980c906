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


def check_positive(name: str, value) -> None:
    check(isinstance(value, (int, float)) and value > 0, name, value, "a float > 0")


def check_num_bins(num_bins, num_test: int) -> None:
    check(isinstance(num_bins, int) and not isinstance(num_bins, bool) and 1 <= num_bins <= min(10, num_test),
          "num_bins", num_bins, f"an int in [1, {min(10, num_test)}]")


def powers_of_two(limit: int) -> list[int]:
    """1, 2, 4, ... up to `limit`: the generation budgets of every curve."""
    return [2 ** i for i in range(limit.bit_length()) if 2 ** i <= limit]


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
        check_positive("temperature", self.temperature)


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
        check_num_bins(self.num_bins, self.num_test)
        check(isinstance(self.shard, int) and 0 <= self.shard < self.num_shards, "shard", self.shard,
              f"an int in [0, num_shards={self.num_shards})")
        check_positive("temperature", self.temperature)

    def budgets(self) -> list[int]:
        """Generation budgets 2^0 ... up to the pool size."""
        return powers_of_two(self.pool_size)


ACCOUNTINGS = ("arxiv", "iclr")


@dataclass(frozen=True)
class PrmSearchNotebookConfig(SuiteConfig):
    """Parameters of notebooks/02_prm_search.ipynb (PRM/ORM from Monte Carlo rollouts, search scaling)."""
    pool_size: int = 256  # samples per test question in notebook 01's pool (reused from its cache)
    temperature: float = 1.0  # sampling temperature of the pool, the PRM solutions and the search steps
    num_bins: int = 5  # oracle difficulty bins
    num_subsets: int = 200  # random subsets per budget for the subset-averaged estimators
    prm_questions: int = 384  # training-split questions whose solutions get Monte Carlo step labels
    prm_samples: int = 16  # solutions sampled per PRM training question (the paper: 16)
    prm_rollouts: int = 8  # rollouts per step prefix for its soft label (the paper: 16)
    verifier_rung: int = 1  # ladder rung the PRM and ORM are built on (0: the policy's own size)
    verifier_head: str = "likelihood"  # likelihood: a value head on the frozen rung; finetune: the whole rung
    verifier_learning_rate: float = 1e-3  # AdamW learning rate of the PRM and ORM
    verifier_batch_size: int = 64  # solutions per optimizer step
    verifier_epochs: int = 100  # most epochs; early stopping on held-out training questions ends sooner
    aggregation: str = "last"  # PRM step-score aggregation used in search and best-of-N weighted
    search_questions: int = 200  # test questions the step-level searches run on (the first of the test split)
    max_budget: int = 256  # largest generation budget of the searches (budgets 1, 2, 4 ... max_budget)
    beam_width: int = 4  # the fixed beam width M (the other beam setting is M = sqrt N)
    lookahead_steps: list = None  # lookahead depths k of the lookahead searches (M = sqrt N), e.g. [1, 3]
    search_seeds: int = 1  # independent runs of every search setting
    max_rounds: int = 40  # beam-search rounds before every beam is declared finished
    accounting: str = "arxiv"  # arxiv: the verifier is free; iclr: each verifier call costs one generation

    shard, num_shards = 0, 1  # the pool is read whole here (notebook 01 shards its sampling)

    def __post_init__(self):
        super().__post_init__()
        for name in ("pool_size", "num_subsets", "prm_questions", "prm_samples", "prm_rollouts",
                     "verifier_batch_size", "verifier_epochs", "search_questions", "search_seeds", "max_rounds"):
            check_int(name, getattr(self, name))
        check_num_bins(self.num_bins, self.num_test)
        check(isinstance(self.verifier_rung, int) and 0 <= self.verifier_rung < len(self.ladder_hidden),
              "verifier_rung", self.verifier_rung, f"an int in [0, {len(self.ladder_hidden) - 1}] (a ladder rung)")
        from .prm import HEADS
        check(self.verifier_head in HEADS, "verifier_head", self.verifier_head, f"one of {HEADS}")
        check_positive("temperature", self.temperature)
        check_positive("verifier_learning_rate", self.verifier_learning_rate)
        check(self.search_questions <= self.num_test, "search_questions", self.search_questions,
              f"an int in [1, num_test={self.num_test}]")
        check(isinstance(self.max_budget, int) and self.max_budget >= 1 and self.max_budget & (self.max_budget - 1) == 0,
              "max_budget", self.max_budget, "a power of two >= 1")
        check(self.max_budget <= self.pool_size, "max_budget", self.max_budget,
              f"a power of two <= pool_size={self.pool_size} (best-of-N is read from the pool)")
        check(isinstance(self.beam_width, int) and self.beam_width >= 1
              and self.beam_width & (self.beam_width - 1) == 0, "beam_width", self.beam_width,
              "a power of two, so that it divides every budget N >= beam_width")
        check(isinstance(self.lookahead_steps, list) and len(self.lookahead_steps) >= 1
              and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in self.lookahead_steps),
              "lookahead_steps", self.lookahead_steps, "a non-empty list of ints k >= 0")
        check(self.accounting in ACCOUNTINGS, "accounting", self.accounting, f"one of {ACCOUNTINGS}")
        from .aggregation import check_aggregation
        check_aggregation(self.aggregation)
        from .search_plan import search_plan
        search_plan(self)  # every search setting is built (and validated) before any compute

    def budgets(self) -> list[int]:
        """Best-of-N budgets 2^0 ... up to the pool size."""
        return powers_of_two(self.pool_size)

    def search_budgets(self) -> list[int]:
        return powers_of_two(self.max_budget)
