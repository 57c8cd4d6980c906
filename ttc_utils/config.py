"""Notebook parameters: one frozen config per notebook, built from sections, resolved and checked before any compute.

Every parameter has exactly one default: its field in a section below (`RunSection`, `WorldSection`, ...).
A profile, `notebooks/params/<profile>.yaml`, is a flat mapping that overrides only what differs from those
defaults (`default.yaml` is empty). A notebook's `parameters` cell sets `profile` and leaves every other
parameter None ("the profile's value"); its next cell is

    cfg = load_config("00_world", globals())

which fills the notebook's config class from (section defaults) <- (the profile file) <- (every parameter that
is not None), so `papermill nb.ipynb out.ipynb -p profile smoke -p seed 1` and the runner
(`python -m ttc_utils.run --profile smoke -p seed=1`) run the same thing. Bad values, unknown names (also names
injected by `papermill -f`), unwritable folders and unloadable models fail there, with one error naming the
parameter. Relative `data_dir` and `figures_dir` are resolved against `notebooks/`, whatever the process cwd.

This module imports no stage: stages import it (or take any object with the same attributes).
"""
from __future__ import annotations

import ast
import copy
import json
import math
import os
import sys
import tempfile
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

import yaml

from .aggregation import AGGREGATIONS
from .cache import Cache
from .checks import check, check_choice, check_int, check_positive, is_int, is_power_of_two
from .model_spec import DEVICE, ModelSpec
from .models import ModelSize
from .open_prm import STEP_DELIMITERS, check_open_prm
from .registry import POLICY_BACKENDS
from .revisions import MAX_ATTEMPTS
from .tasks import TASKS, get_task
from .tasks.math import PROMPT_STYLES
from .training import LR_SCALINGS, PRECISIONS, TrainConfig, resolve_precision
from .value_head import HEADS
from .workers import usable_cores
from .world import WorldConfig, max_problem_tokens

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
PARAMS_DIR = NOTEBOOKS_DIR / "params"
ACCOUNTINGS = ("arxiv", "iclr")  # arxiv v1: verifier calls are free; ICLR 2025: each call made costs one generation
# Names IPython itself puts in a notebook's namespace (names starting with "_" are skipped too).
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
LITERAL_TYPES = (str, int, float, bool, list, dict, tuple, type(None))


def profiles() -> tuple[str, ...]:
    """The profile names: the stems of `notebooks/params/*.yaml` (a new profile is one new file)."""
    return tuple(sorted(p.stem for p in Path(PARAMS_DIR).glob("*.yaml")))


PROFILES = profiles()


def powers_of_two(limit: int) -> list[int]:
    """1, 2, 4, ... up to `limit`: the generation budgets of every curve."""
    return [2 ** i for i in range(limit.bit_length()) if 2 ** i <= limit]


# --- sections: each field's one default, its meaning, and the checks of its own values -----------------------------


@dataclass(frozen=True)
class RunSection:
    """Which profile, which seed, and where artifacts and figures go."""
    profile: str = "default"  # a file notebooks/params/<profile>.yaml; also names the cache data/cache/<profile>
    seed: int = 0  # one seed drives the world, the corpus order, initialisation and sampling
    data_dir: str = "../data"  # the cache lives in <data_dir>/cache/<profile>; relative to notebooks/
    figures_dir: str = "../figures"  # where figures (PNG, PDF, JSON) are written; relative to notebooks/
    device: str = "cpu"  # where every model trains and runs: cpu, cuda, cuda:N, mps
    workers: int = 0  # CPU processes for independent jobs, one torch thread each (0: one per core); no result differs

    def check(self):
        check(self.profile in profiles(), "profile", self.profile, f"one of {profiles()} (notebooks/params/*.yaml)")
        check_int("seed", self.seed, lo=0)
        check_int("workers", self.workers, lo=0)
        check(isinstance(self.device, str) and DEVICE.fullmatch(self.device) is not None, "device", self.device,
              "'cpu', 'cuda', 'cuda:N', 'mps' or 'xpu'")
        for name in ("data_dir", "figures_dir"):
            value = getattr(self, name)
            check(isinstance(value, str) and value != "", name, value, "a folder path")
            # resolved once here, so every process (runner, plain papermill, any cwd) writes to the same place
            path = Path(os.path.expanduser(value))
            object.__setattr__(self, name, str(path if path.is_absolute() else (NOTEBOOKS_DIR / path).resolve()))

    def check_files(self):
        for name in ("data_dir", "figures_dir"):
            check_writable_dir(name, getattr(self, name))

    def cache(self) -> Cache:
        return Cache(Path(self.data_dir) / "cache" / self.profile, workers=self.cpu_workers())

    def cpu_workers(self) -> int:
        """`workers` as a count; 1 off the CPU or under vLLM (one engine holds the device; a fork would copy it)."""
        if self.device != "cpu" or getattr(self, "policy_backend", "transformers") != "transformers":
            return 1
        return self.workers or usable_cores()


@dataclass(frozen=True)
class TaskSection:
    """Which task the notebooks run: the embedded world (its knobs below) or MATH-500 (real models only)."""
    task: str = "arithmetic"  # arithmetic (the embedded world) | math (MATH-500 with real models: ladder_paths)
    task_path: str = ""  # math: a local MATH-500 .jsonl or .parquet file; "" reads HuggingFaceH4/MATH-500 from the hub
    prompt_style: str = "plain"  # math: plain (instruction, question) | chatml (Qwen chat template) | fewshot (base LM)
    max_new_tokens: int = 0  # most tokens of one solution; 0 is the task's own bound (the world's longest solution)

    def check(self):
        check(self.task in TASKS, "task", self.task, f"one of {sorted(TASKS)}")
        check(isinstance(self.task_path, str), "task_path", self.task_path, "a file path or ''")
        check(self.prompt_style in PROMPT_STYLES, "prompt_style", self.prompt_style, f"one of {list(PROMPT_STYLES)}")
        check_int("max_new_tokens", self.max_new_tokens, lo=0)
        if self.task == "arithmetic":  # the world generates its questions: a file or prompt style would be ignored
            check(not self.task_path, "task_path", self.task_path, "'' for task='arithmetic' (it generates questions)")
            check(self.prompt_style == "plain", "prompt_style", self.prompt_style,
                  "'plain' for task='arithmetic' (its prompt is the question line)")

    def check_files(self):
        if self.task_path and not Path(os.path.expanduser(self.task_path)).is_file():
            raise FileNotFoundError(f"task_path={self.task_path!r} does not exist or is not a file "
                                    f"(expected a MATH-500 .jsonl or .parquet file, or '' for the hub)")

    def task_kwargs(self) -> dict:
        """What `tasks.get_task(self.task, ...)` is built with."""
        if self.task == "arithmetic":
            return {"world": self.world()}
        bound = {"max_tokens": self.max_new_tokens} if self.max_new_tokens else {}
        return {"path": os.path.expanduser(self.task_path) or None, "prompt_style": self.prompt_style, **bound}


@dataclass(frozen=True)
class WorldSection:
    """The embedded world: chains of operations evaluated left to right modulo `modulus`."""
    min_steps: int = 1  # fewest operations per question
    max_steps: int = 8  # most operations per question (a problem must fit the models' context)
    modulus: int = 10  # every intermediate result is taken modulo this
    max_operand: int = 9  # largest operand of + and -
    max_multiplier: int = 9  # largest operand of *
    ops: str = "+-*"  # operation mix, one drawn uniformly per step
    coprime_multipliers: bool = False  # multipliers coprime to the modulus only (no lucky right answers)
    answer_trace: bool = False  # the answer line lists every intermediate value (no lucky right answers)

    def check(self):
        world = self.world()  # WorldConfig checks each field and names it
        limit = TrainConfig().max_len
        need = max_problem_tokens(world)
        if need > limit:
            # each step adds at least one token, so no max_steps >= limit can fit
            fits = [k for k in range(world.min_steps, min(world.max_steps, limit))
                    if max_problem_tokens(replace(world, max_steps=k)) <= limit]
            hint = f"max_steps <= {fits[-1]} fits" if fits else "no max_steps fits with these operands"
            # training on problems cut at the context limit never learns their answers and crawls
            raise ValueError(f"max_steps={self.max_steps!r} is not allowed: its longest problem takes {need} tokens, "
                             f"more than the models' context limit of {limit} tokens (TrainConfig.max_len); {hint}")

    def world(self) -> WorldConfig:
        return WorldConfig(min_steps=self.min_steps, max_steps=self.max_steps, modulus=self.modulus,
                           max_operand=self.max_operand, max_multiplier=self.max_multiplier, ops=self.ops,
                           coprime_multipliers=self.coprime_multipliers, answer_trace=self.answer_trace)


@dataclass(frozen=True)
class LadderSection:
    """The policy ladder: transformers of growing size pretrained on the same tokens of the world."""
    # The top rung is deeper, not wider: d192l5 (2.95M) fell below d128l5 (greedy -0.260 at seed 0); d160l7 did not.
    ladder_hidden: list = field(default_factory=lambda: [64, 96, 128, 160])  # width of each rung (of head_size)
    ladder_layers: list = field(default_factory=lambda: [3, 4, 5, 7])  # depth of each rung
    train_tokens: int = 1_900_000  # pretraining tokens every rung sees
    batch_size: int = 32  # problems per optimizer step
    head_size: int = 16  # attention head width of every rung; vLLM reads other widths than 32, 64, 80, ... zero-padded
    learning_rate: float = 1e-3  # AdamW peak learning rate of the smallest rung (warm-up, constant, then a cool-down)
    # 1/width: with one rate for all, d96l4 already reached greedy 1.000, so no rung above it could beat it
    lr_scaling: str = "1/width"  # "constant" (every rung at learning_rate) or "1/width" (learning_rate * d_min / d)
    # auto: bf16 where the device has bf16 matmuls (AMX, AVX512: ~2x faster than fp32), fp32 elsewhere (on AVX2 bf16
    # autocast was 6-16x slower than fp32); the ladder's floats, and so every figure, depend on which one ran
    train_precision: str = "auto"  # "auto", "bf16" (bf16 autocast, fp32 weights) or "fp32"
    ladder_paths: list = field(default_factory=list)  # real models in place of the trained ladder, smallest first

    def check(self):
        check(isinstance(self.ladder_paths, list) and all(isinstance(p, str) and p for p in self.ladder_paths),
              "ladder_paths", self.ladder_paths, "a list of model folders or hub ids, smallest first ([] trains one)")
        check(isinstance(self.ladder_hidden, list) and len(self.ladder_hidden) >= 2
              and all(is_int(h) and h >= 16 and h % 16 == 0 for h in self.ladder_hidden),
              "ladder_hidden", self.ladder_hidden, "a list of >= 2 widths, each a multiple of 16")
        check(isinstance(self.ladder_layers, list) and len(self.ladder_layers) == len(self.ladder_hidden)
              and all(is_int(x) and x >= 1 for x in self.ladder_layers),
              "ladder_layers", self.ladder_layers, f"a list of {len(self.ladder_hidden)} ints >= 1 (one per rung)")
        check_int("train_tokens", self.train_tokens)
        check_int("batch_size", self.batch_size)
        divides = is_int(self.head_size) and self.head_size >= 8 and all(h % self.head_size == 0
                                                                          for h in self.ladder_hidden)
        check(divides, "head_size", self.head_size,
              f"an int >= 8 that divides every width of ladder_hidden={self.ladder_hidden}")
        check_positive("learning_rate", self.learning_rate)
        check(self.lr_scaling in LR_SCALINGS, "lr_scaling", self.lr_scaling, f"one of {LR_SCALINGS}")
        check_choice("train_precision", self.train_precision, ("auto", *PRECISIONS))
        # resolved here, so the config cell shows which precision runs and cache keys hold the concrete one
        object.__setattr__(self, "train_precision", resolve_precision(self.train_precision, self.device))

    def check_files(self):
        for i, path in enumerate(self.ladder_paths):
            check_model(path, f"ladder_paths[{i}]")

    def ladder_size(self) -> int:
        return len(self.ladder_paths) or len(self.ladder_hidden)

    def sizes(self) -> list[ModelSize]:
        return [ModelSize(h, n, h // self.head_size) for h, n in zip(self.ladder_hidden, self.ladder_layers)]


@dataclass(frozen=True)
class TestSection:
    """The test set every notebook evaluates on, and the policy under test."""
    __test__ = False  # not a pytest test class, despite its name

    num_test: int = 400  # test questions (the first num_test of the test split, the same in every notebook)
    policy_path: str = ""  # the policy; "" means the ladder's smallest rung (the base policy); else a folder or hub id
    policy_backend: str = "transformers"  # how the policy and ladder sample: transformers | vllm (the vllm extra)

    def check(self):
        check_int("num_test", self.num_test)
        check(isinstance(self.policy_path, str), "policy_path", self.policy_path, "a model folder, a hub id or ''")
        check(self.policy_backend in POLICY_BACKENDS, "policy_backend", self.policy_backend,
              f"one of {sorted(POLICY_BACKENDS)}")

    def check_files(self):
        if self.policy_path:
            check_model(self.policy_path, "policy_path")


@dataclass(frozen=True)
class SamplingSection:
    """How the policy samples."""
    temperature: float = 1.0  # sampling temperature of every sample, rollout and search step

    def check(self):
        check_positive("temperature", self.temperature)


@dataclass(frozen=True)
class Pass1Section:
    """The base policy's per-question pass@1 (notebook 00)."""
    samples_per_question: int = 64  # samples per test question for the base policy's pass@1

    def check(self):
        check_int("samples_per_question", self.samples_per_question)


@dataclass(frozen=True)
class ValiditySection:
    """The world's validity criteria (`validity`), measured on several seeds (notebook 00)."""
    validity_seeds: list = field(default_factory=lambda: [0, 1, 2])  # seeds whose world and ladder are measured

    def check(self):
        check(isinstance(self.validity_seeds, list) and len(self.validity_seeds) >= 1
              and all(is_int(x) and x >= 0 for x in self.validity_seeds)
              and len(set(self.validity_seeds)) == len(self.validity_seeds),
              "validity_seeds", self.validity_seeds, "a non-empty list of distinct ints >= 0")


@dataclass(frozen=True)
class PoolSection:
    """The sample pool every best-of-N style curve is estimated from, and the oracle difficulty bins."""
    pool_size: int = 256  # samples per test question in the pool (the paper: 2048)
    num_bins: int = 5  # oracle difficulty bins (quantiles of the base policy's pass@1 on the pool)
    num_subsets: int = 200  # random subsets per budget for the subset-averaged estimators

    def check(self):
        check_int("pool_size", self.pool_size, lo=2)  # a scaling curve needs at least two budgets
        check(is_int(self.num_bins) and 1 <= self.num_bins <= 10, "num_bins", self.num_bins, "an int in [1, 10]")
        check_int("num_subsets", self.num_subsets)

    def budgets(self) -> list[int]:
        """Best-of-N budgets 2^0 ... up to the pool size."""
        return powers_of_two(self.pool_size)


@dataclass(frozen=True)
class LadderEvalSection:
    """Every ladder rung's sampled pass@1 per difficulty bin (notebook 01)."""
    ladder_samples: int = 16  # samples per question for each ladder model's sampled pass@1

    def check(self):
        check_int("ladder_samples", self.ladder_samples)


@dataclass(frozen=True)
class ShardSection:
    """Sharding sampling over separate jobs: the pool (notebook 01), the pool scores and the search (notebook 02)."""
    shard: int = 0  # which question shard this run samples, from 0 to num_shards - 1
    num_shards: int = 1  # shards run as separate jobs; merge their caches, then rerun with 1

    def check(self):
        check_int("num_shards", self.num_shards)
        check(is_int(self.shard) and 0 <= self.shard < self.num_shards, "shard", self.shard,
              f"an int in [0, num_shards={self.num_shards})")


@dataclass(frozen=True)
class PrmSection:
    """The PRM and ORM: Monte Carlo step labels on training questions, then a verifier trained on them."""
    prm_questions: int = 384  # training-split questions whose sampled solutions get Monte Carlo step labels
    prm_samples: int = 16  # solutions sampled per PRM training question (the paper: 16)
    prm_rollouts: int = 8  # rollouts per step prefix for its soft label (the paper: 16)
    verifier_rung: int = 1  # ladder rung the PRM and ORM are built on (0 is the policy's own size)
    verifier_head: str = "likelihood"  # likelihood: value head on the frozen rung's state and log-probs; finetune
    verifier_learning_rate: float = 1e-3  # AdamW learning rate of the PRM and the ORM
    verifier_batch_size: int = 64  # solutions per optimizer step
    verifier_epochs: int = 100  # most epochs; early stopping on held-out training questions ends sooner
    prm_path: str = ""  # an open PRM in place of the trained one (notebook 02 then trains no verifier); "" trains one
    prm_backend: str = "math_shepherd"  # how prm_path scores steps: math_shepherd (+/- at a step tag) | qwen_prm
    trust_remote_code: bool = False  # let prm_path run its own code from the hub (qwen_prm models need it); opt-in

    def check(self):
        for name in ("prm_questions", "prm_samples", "prm_rollouts", "verifier_batch_size", "verifier_epochs"):
            check_int(name, getattr(self, name))
        check_int("verifier_rung", self.verifier_rung, lo=0)
        check_choice("verifier_head", self.verifier_head, HEADS)
        check_positive("verifier_learning_rate", self.verifier_learning_rate)
        check(isinstance(self.prm_path, str), "prm_path", self.prm_path, "a model folder, a hub id or ''")
        check_choice("prm_backend", self.prm_backend, sorted(STEP_DELIMITERS))
        check(isinstance(self.trust_remote_code, bool), "trust_remote_code", self.trust_remote_code, "true or false")

    def check_files(self):
        if self.prm_path:
            check_open_prm(self.open_prm().check())

    def open_prm(self) -> ModelSpec:
        return ModelSpec(self.prm_path, backend=self.prm_backend, device=self.device, param="prm_path",
                         trust_remote_code=self.trust_remote_code)


@dataclass(frozen=True)
class SearchSection:
    """Step-level search against the PRM (beam, lookahead, DVTS) at generation budgets 1, 2, 4 ... max_budget."""
    aggregation: str = "last"  # PRM step-score aggregation in search and best-of-N weighted: last | min | prod
    search_questions: int = 200  # test questions the searches run on (the first of the test split)
    max_budget: int = 128  # largest search budget, a power of two (budgets 1, 2, 4 ... max_budget; the paper: 256)
    beam_width: int = 4  # the fixed beam width M, a power of two; the other setting is M of about sqrt N
    lookahead_steps: list = field(default_factory=lambda: [1, 3])  # lookahead depths k; each costs N(k+1)
    search_seeds: int = 3  # independent runs of every search setting (findings average each question over them)
    max_rounds: int = 40  # beam-search rounds before every beam counts as finished (the paper: 40)
    accounting: str = "arxiv"  # arxiv: verifier calls are free; iclr: each verifier call made costs one generation

    def check(self):
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        for name in ("search_questions", "search_seeds", "max_rounds"):
            check_int(name, getattr(self, name))
        check(is_power_of_two(self.max_budget), "max_budget", self.max_budget, "a power of two >= 1")
        check(is_power_of_two(self.beam_width), "beam_width", self.beam_width,
              "a power of two, so that it divides every budget N >= beam_width")
        # k = 0 is plain beam search, which always runs; as a lookahead depth it would be silently skipped
        check(isinstance(self.lookahead_steps, list) and len(self.lookahead_steps) >= 1
              and all(is_int(k) and k >= 1 for k in self.lookahead_steps),
              "lookahead_steps", self.lookahead_steps, "a non-empty list of ints k >= 1")
        check_choice("accounting", self.accounting, ACCOUNTINGS)

    def search_budgets(self) -> list[int]:
        return powers_of_two(self.max_budget)


@dataclass(frozen=True)
class RevisionSection:
    """The revision model and its chains (notebook 03, paper §6)."""
    revision_questions: int = 500  # training-split questions whose base-policy samples make the trajectories
    revision_samples: int = 64  # samples per such question (the paper: 64)
    revision_temperature: float = 1.0  # sampling temperature of those samples
    revision_learning_rate: float = 3e-4  # AdamW peak rate of the revision model's fine-tune
    revision_epochs: int = 3  # passes over the trajectories (the checkpoint is chosen along the way)
    revision_test_questions: int = 100  # test questions the chains run on (the first of the test split)
    revision_chains: int = 4  # chains of revision_steps attempts per question for pass@1 per step (Fig. 6 left)
    revision_steps: int = 64  # attempts per such chain
    revision_max_budget: int = 64  # largest budget S x P of the sequential / parallel sweep, a power of two
    revision_context: int = 4  # most recent previous attempts a revision sees (the paper: 4)
    revision_seeds: int = 3  # independent samplings of the test chains (findings average each question over them)
    orm_questions: int = 100  # training-split questions whose revision chains train the revision ORM

    def check(self):
        for name in ("revision_questions", "revision_samples", "revision_epochs", "revision_test_questions",
                     "revision_chains", "revision_steps", "revision_seeds", "orm_questions"):
            check_int(name, getattr(self, name))
        check_positive("revision_temperature", self.revision_temperature)
        check_positive("revision_learning_rate", self.revision_learning_rate)
        check(is_power_of_two(self.revision_max_budget), "revision_max_budget", self.revision_max_budget,
              "a power of two >= 1")
        check(is_int(self.revision_context) and 1 <= self.revision_context <= MAX_ATTEMPTS, "revision_context",
              self.revision_context, f"an int in [1, {MAX_ATTEMPTS}] (the trajectories hold at most that many)")

    def revision_budgets(self) -> list[int]:
        return powers_of_two(self.revision_max_budget)

    def revision_shapes(self) -> list[tuple[int, int]]:
        """Every (S sequential, P parallel) with S, P powers of two and S·P a budget: the paper's ratio grid."""
        return [(s, n // s) for n in self.revision_budgets() for s in powers_of_two(n)]


# the search families compute-optimal search may choose among (notebook 02's results table has them)
SEARCH_METHODS = ("best_of_n_weighted", "beam", "lookahead", "dvts")


@dataclass(frozen=True)
class ComputeOptimalSection:
    """Compute-optimal selection over notebooks 02 and 03's results (notebook 04, paper §3.2 and Eq. 1)."""
    folds: int = 2  # cross-validation folds: a setting is chosen on the other folds' questions (the paper: 2)
    search_methods: list = field(default_factory=lambda: list(SEARCH_METHODS))  # what compute-optimal search picks
    prediction_samples: int = 128  # pool samples per question whose mean verifier score predicts its difficulty
    efficiency_resamples: int = 2000  # bootstrap resamples of the efficiency ratio's CI

    def check(self):
        check_int("folds", self.folds, lo=2)
        check(isinstance(self.search_methods, list) and len(self.search_methods) >= 1
              and all(m in SEARCH_METHODS for m in self.search_methods) and len(set(self.search_methods))
              == len(self.search_methods), "search_methods", self.search_methods,
              f"a non-empty list of distinct methods among {list(SEARCH_METHODS)}")
        check_int("prediction_samples", self.prediction_samples)
        check_int("efficiency_resamples", self.efficiency_resamples, lo=100)


@dataclass(frozen=True)
class FlopsSection:
    """The FLOPs-matched comparison of test-time compute and pretraining (notebook 05, paper §7)."""
    inference_ratios: list = field(default_factory=lambda: [0.16, 0.79, 22.0])  # R: inference / pretraining tokens

    def check(self):
        check(isinstance(self.inference_ratios, list) and len(self.inference_ratios) >= 1
              and all(isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) and r > 0
                      for r in self.inference_ratios), "inference_ratios", self.inference_ratios,
              "a non-empty list of ratios R = D_inference / D_pretrain > 0")


SECTIONS = (RunSection, TaskSection, WorldSection, LadderSection, TestSection, SamplingSection, Pass1Section,
            ValiditySection, PoolSection, LadderEvalSection, ShardSection, PrmSection, SearchSection, RevisionSection,
            ComputeOptimalSection, FlopsSection)


# --- checks across sections: each runs on every config that has all the fields it names ---------------------------


def _bins_fit_test(c):
    check(c.num_bins <= c.num_test, "num_bins", c.num_bins,
          f"an int <= num_test={c.num_test} (each bin needs questions)")


def _search_fits_test(c):
    check(c.search_questions <= c.num_test, "search_questions", c.search_questions,
          f"an int in [1, num_test={c.num_test}] (the searches run on test questions)")


def _budget_fits_pool(c):
    check(c.max_budget <= c.pool_size, "max_budget", c.max_budget,
          f"a power of two <= pool_size={c.pool_size} (best-of-N at every search budget is read from the pool)")


def _beam_fits_budget(c):
    check(c.beam_width <= c.max_budget, "beam_width", c.beam_width,
          f"a power of two <= max_budget={c.max_budget} (wider beams never run at any budget)")


def _rung_exists(c):
    if getattr(c, "prm_path", ""):
        return  # an open PRM is built on no rung
    check(c.verifier_rung < c.ladder_size(), "verifier_rung", c.verifier_rung,
          f"an int in [0, {c.ladder_size() - 1}] (a ladder rung)")


def _real_task_has_models(c):
    # the world's ladder is pretrained on the world's own questions; another task brings its models
    check(c.task == "arithmetic" or c.ladder_paths, "ladder_paths", c.ladder_paths,
          f"a non-empty list of models for task={c.task!r} (only the embedded world trains its own ladder)")


def _real_task_has_prm(c):
    # Monte Carlo labels are drawn on the training split, which only the embedded world has here
    check(c.task == "arithmetic" or c.prm_path, "prm_path", c.prm_path,
          f"an open PRM for task={c.task!r} (no training split here for the PRM's Monte Carlo labels)")


def _prm_reads_task_steps(c):
    if not c.prm_path:
        return
    delimiter = get_task(c.task, **c.task_kwargs()).step_delimiter
    allowed = STEP_DELIMITERS[c.prm_backend]
    check(delimiter in allowed, "prm_backend", c.prm_backend,
          f"a PRM trained on the task's steps: task={c.task!r} ends a step with {delimiter!r}, {c.prm_backend} was "
          f"trained on steps ending in {' or '.join(map(repr, allowed))}")


def _lookahead_affordable(c):
    # a k-step lookahead setting spends N(k+1) generations, so at budget 2^i it runs at N = 2^i / (k+1): k+1 must be
    # a power of two, and the smallest square N with M = sqrt N (N = 4) must fit, or the setting never runs at all
    never = [k for k in c.lookahead_steps if not (is_power_of_two(k + 1) and 4 * (k + 1) <= c.max_budget)]
    check(not never, "lookahead_steps", c.lookahead_steps,
          f"depths k with k+1 a power of two and 4(k+1) <= max_budget={c.max_budget} (k = 1, 3, 7, ...); "
          f"no budget affords k in {never}")


def _revisions_fit_test(c):
    check(c.revision_test_questions <= c.num_test, "revision_test_questions", c.revision_test_questions,
          f"an int in [1, num_test={c.num_test}] (the chains run on test questions)")


def _prediction_fits_pool(c):
    check(c.prediction_samples <= c.pool_size // 2, "prediction_samples", c.prediction_samples,
          f"an int in [1, pool_size / 2 = {c.pool_size // 2}] (the predicted bins read the half of the pool the "
          f"oracle bins read)")


CROSS_CHECKS = (
    (("revision_test_questions", "num_test"), _revisions_fit_test),
    (("num_bins", "num_test"), _bins_fit_test),
    (("search_questions", "num_test"), _search_fits_test),
    (("max_budget", "pool_size"), _budget_fits_pool),
    (("beam_width", "max_budget"), _beam_fits_budget),
    (("task", "ladder_paths"), _real_task_has_models),
    (("task", "prm_path"), _real_task_has_prm),
    (("task", "prm_path"), _prm_reads_task_steps),
    (("verifier_rung", "ladder_hidden"), _rung_exists),
    (("lookahead_steps", "max_budget"), _lookahead_affordable),
    (("prediction_samples", "pool_size"), _prediction_fits_pool),
)


# --- the notebook configs --------------------------------------------------------------------------------------------


class NotebookConfig:
    """What every notebook config adds to its sections: checks in order, derived objects, a full repr.

    Checks run cheapest first: each section's own fields (along the MRO), then the checks across sections,
    then those that touch the disk or the hub (`check_files`: folders writable, the policy loadable).
    """

    # why a notebook cannot run on real models (given ladder_paths or a task other than the world); "" where it can
    world_only = ""

    def __post_init__(self):
        if self.world_only and (self.task != "arithmetic" or self.ladder_paths):
            raise ValueError(f"task={self.task!r}, ladder_paths={self.ladder_paths!r} is not allowed in "
                             f"{self.notebook_name()}: {self.world_only}")
        for section in self.sections():
            section.check(self)
        names = {f.name for f in fields(self)}
        for needs, cross_check in CROSS_CHECKS:
            if names.issuperset(needs):
                cross_check(self)
        for section in self.sections():
            if "check_files" in vars(section):
                section.check_files(self)

    @classmethod
    def notebook_name(cls) -> str:
        return next(name for name, c in NOTEBOOK_CONFIGS.items() if c is cls)

    @classmethod
    def sections(cls) -> list[type]:
        return [c for c in cls.__mro__ if c in SECTIONS]

    @classmethod
    def parameter_names(cls) -> list[str]:
        """The notebook's parameters, in section order (its `parameters` cell declares exactly these)."""
        return [f.name for section in cls.sections() for f in fields(section)]

    @classmethod
    def from_params(cls, params: dict):
        """From a dict of parameter names (others keep their defaults); an unknown name is an error."""
        unknown = sorted(set(params) - set(cls.parameter_names()))
        check(not unknown, "parameters", unknown, f"names among {cls.parameter_names()}")
        return cls(**params)

    def for_notebook(self, notebook: str):
        """The config `notebook` would have with this one's values: a notebook that reads another's stages calls
        them with it, so their cache keys (which hash the whole config) are that notebook's own."""
        cls = notebook_config(notebook)
        return cls(**{name: getattr(self, name) for name in cls.parameter_names()})

    def train(self) -> TrainConfig:
        return TrainConfig(tokens=self.train_tokens, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           lr_scaling=self.lr_scaling, precision=self.train_precision, seed=self.seed)

    def as_dict(self) -> dict:
        """Every parameter's resolved value, in section order (a copy: mutating it leaves the config alone)."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self.parameter_names()}

    def cache_key(self) -> dict:
        """`as_dict` without what only says where things go or how (the profile's name, data_dir, figures_dir,
        workers): a cached table keyed by it is found again by any notebook, from any folder, that resolves the same
        values."""
        return {k: v for k, v in self.as_dict().items() if k not in ("profile", "data_dir", "figures_dir", "workers")}

    def __repr__(self) -> str:
        # one line per section, so the config cell shows every resolved value readably
        lines = [", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(s)) for s in self.sections()]
        return f"{type(self).__name__}(\n" + "".join(f"    {line},\n" for line in lines) + ")"


@dataclass(frozen=True, repr=False)
class WorldNotebookConfig(NotebookConfig, RunSection, TaskSection, WorldSection, LadderSection, TestSection,
                          SamplingSection, Pass1Section, ValiditySection):
    """Parameters of notebooks/00_world.ipynb (the world, the policy ladder, the base policy's pass@1)."""

    world_only = ("it pretrains the embedded world's ladder and measures the world itself; real models start at "
                  "notebook 01")


@dataclass(frozen=True, repr=False)
class PoolNotebookConfig(NotebookConfig, RunSection, TaskSection, WorldSection, LadderSection, TestSection,
                          SamplingSection, PoolSection, LadderEvalSection, ShardSection):
    """Parameters of notebooks/01_difficulty_bins.ipynb (the sample pool, estimators, oracle bins)."""


@dataclass(frozen=True, repr=False)
class PrmSearchNotebookConfig(NotebookConfig, RunSection, TaskSection, WorldSection, LadderSection, TestSection,
                          SamplingSection, PoolSection, PrmSection, SearchSection, ShardSection):
    """Parameters of notebooks/02_prm_search.ipynb (PRM/ORM from Monte Carlo rollouts, search scaling). A shard
    (num_shards > 1) only samples, through `python -m ttc_utils.run` (`prm_search.sample_shard`), and draws nothing."""


@dataclass(frozen=True, repr=False)
class RevisionNotebookConfig(NotebookConfig, RunSection, TaskSection, WorldSection, LadderSection, TestSection,
                          SamplingSection, PoolSection, PrmSection, RevisionSection):
    """Parameters of notebooks/03_revisions.ipynb (the revision model, sequential vs parallel, the ratio sweep)."""

    world_only = ("it fine-tunes a revision model on training-split trajectories, and only the embedded world has a "
                  "training split here (on MATH that fine-tune would also need a GPU)")

    shard, num_shards = 0, 1  # not parameters: the pool is read whole here (notebook 01 shards its sampling)


@dataclass(frozen=True, repr=False)
class ComputeOptimalNotebookConfig(NotebookConfig, RunSection, TaskSection, WorldSection, LadderSection, TestSection,
                                   SamplingSection, PoolSection, PrmSection, SearchSection, RevisionSection,
                                   ComputeOptimalSection):
    """Parameters of notebooks/04_compute_optimal.ipynb (compute-optimal search and revisions, the efficiency
    ratio); it reads notebooks 01-03's cached stages with their own configs (`for_notebook`)."""

    world_only = "it reads notebook 03's revision chains, which run on the embedded world only"

    shard, num_shards = 0, 1  # not parameters: the pool is read whole here (notebook 01 shards its sampling)


@dataclass(frozen=True, repr=False)
class FlopsMatchedNotebookConfig(NotebookConfig, RunSection, TaskSection, WorldSection, LadderSection, TestSection,
                                 SamplingSection, PoolSection, LadderEvalSection, PrmSection, SearchSection,
                                 RevisionSection, ComputeOptimalSection, FlopsSection):
    """Parameters of notebooks/05_flops_matched.ipynb (test-time compute on the base vs the larger rungs at matched
    FLOPs); it reads notebook 04's stages with its config (`for_notebook`)."""

    world_only = ("it reads notebook 04's tables and each rung's pretraining tokens, which only the trained ladder "
                  "records")

    shard, num_shards = 0, 1  # not parameters: the pool is read whole here (notebook 01 shards its sampling)


NOTEBOOK_CONFIGS = {"00_world": WorldNotebookConfig, "01_difficulty_bins": PoolNotebookConfig,
                    "02_prm_search": PrmSearchNotebookConfig, "03_revisions": RevisionNotebookConfig,
                    "04_compute_optimal": ComputeOptimalNotebookConfig, "05_flops_matched": FlopsMatchedNotebookConfig}


def all_parameter_names() -> set[str]:
    return {f.name for section in SECTIONS for f in fields(section)}


def section_defaults() -> dict:
    """Every parameter's default, from the sections (the one place defaults live)."""
    return {f.name: (f.default if f.default_factory is MISSING else f.default_factory())
            for section in SECTIONS for f in fields(section)}


# --- profiles and the config cell ------------------------------------------------------------------------------------


def load_profile(profile: str, notebook: str | None = None) -> dict:
    """What `profile` overrides (a flat name -> value mapping); with `notebook`, only that notebook's parameters.

    An unknown name in the file is an error naming the file and the name (a typo would otherwise be ignored).
    """
    check(profile in profiles(), "profile", profile, f"one of {profiles()} (notebooks/params/*.yaml)")
    path = Path(PARAMS_DIR) / f"{profile}.yaml"
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise TypeError(f"{path}: expected a mapping of parameter names to values, got {type(raw).__name__}")
    allowed = all_parameter_names() - {"profile"}  # the profile is the file's name, not one of its values
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown parameter {unknown[0]!r} (all unknown: {unknown}); "
                         f"expected names among {sorted(allowed)}")
    if notebook is not None:
        names = set(notebook_config(notebook).parameter_names())
        raw = {k: v for k, v in raw.items() if k in names}
    return raw


def notebook_config(notebook: str) -> type:
    check(notebook in NOTEBOOK_CONFIGS, "notebook", notebook, f"one of {sorted(NOTEBOOK_CONFIGS)}")
    return NOTEBOOK_CONFIGS[notebook]


def load_config(notebook: str, namespace: dict):
    """The config of `notebook` (e.g. '00_world') from a notebook's namespace (its `globals()`).

    Values: the section defaults, then the profile file named by `profile`, then every parameter in the
    namespace that is not None. Before that, a literal global that is no parameter of this notebook is an
    error: papermill injects any name it is given (`-p`, `-f file.yaml`) and only warns, so such a name would
    otherwise be silently ignored. What the notebook's own code put there is allowed: an imported constant
    (the very object its import names) and the variables its cells assign (a rerun in JupyterLab).
    """
    cls = notebook_config(notebook)
    names = cls.parameter_names()
    assigned, imported = notebook_own_names(notebook)

    def own(name, value) -> bool:
        if name in imported:
            module, attr = imported[name]
            if getattr(sys.modules.get(module), attr, MISSING) is value:
                return True
        return name in assigned

    unknown = sorted(k for k, v in namespace.items()
                     if type(v) in LITERAL_TYPES and k not in names and not k.startswith("_")
                     and k not in IPYTHON_NAMES and not own(k, v))
    if unknown:
        raise ValueError(f"{unknown[0]}={namespace[unknown[0]]!r} is not a parameter of {notebook} (unknown: "
                         f"{unknown}); allowed names: {names}. A profile is chosen with -p profile <name>, not "
                         f"papermill -f notebooks/params/<name>.yaml")
    profile = namespace.get("profile")
    profile = "default" if profile is None else profile
    check(isinstance(profile, str) and profile in profiles(), "profile", profile,
          f"one of {profiles()} (notebooks/params/*.yaml)")
    explicit = {k: namespace[k] for k in names if namespace.get(k) is not None}
    return cls(**{**load_profile(profile, notebook), **explicit, "profile": profile})


def notebook_own_names(notebook: str) -> tuple[set[str], dict[str, tuple[str, str]]]:
    """(names the notebook's code cells assign or define, {name: (module, attribute)} of its `from` imports).

    Both are empty if the notebook cannot be read. The parameters cell is left out: its names are parameters.
    """
    try:
        cells = json.loads((NOTEBOOKS_DIR / f"{notebook}.ipynb").read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return set(), {}
    assigned, imported = set(), {}
    for cell in cells:
        if cell.get("cell_type") != "code" or "parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        src = "".join(cell.get("source", []))
        # IPython magics and shell escapes are not Python
        src = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                assigned.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                assigned.add(node.name)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.update({a.asname or a.name: (node.module, a.name) for a in node.names})
    return assigned, imported


# --- checks that touch the disk or the hub ---------------------------------------------------------------------------


def check_writable_dir(name: str, path: str) -> None:
    """Create `path` if missing and write a temporary file into it; an error names the parameter."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as e:
        raise ValueError(f"{name}={path!r} is not allowed: cannot create or write into it "
                         f"({type(e).__name__}: {e.strerror or e})") from e


def check_model(path: str, param: str) -> None:
    """Raise ValueError / FileNotFoundError naming `param` unless the model at `path` (folder or hub id) loads."""
    ModelSpec(path, param=param).check()
