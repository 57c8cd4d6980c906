"""Benchmark: step-level search against best-of-N at the same generation budget, side by side in one run.

For one budget N on the same questions, prints wall time per generation (one generation = one full
solution's worth of budget) of:
  - best-of-N: N full samples per question in one batched `sample` call (no verifier);
  - beam search (M = 4) with the shared-prefill KV-cache sampler the suite uses;
  - the same beam search with the library `generate` path for every step (the reference);
and best-of-N weighted (the same samples scored by the PRM to pick one, best-of-N as a test-time method), beside
which beam search's own PRM calls are a like-for-like cost. Methods alternate, best of `--reps` kept; only ratios
measured together mean anything here.

    python bench/search.py                              # default profile's base policy and PRM
    python bench/search.py --questions 64 --budget 16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ttc_utils.cache import MissingArtifact, cached_only
from ttc_utils.config import load_config
from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SamplingParams
from ttc_utils.registry import load_policy, load_verifier
from ttc_utils.search import SearchConfig, search
from ttc_utils.stages import common, prm_search
from ttc_utils.tasks.arithmetic import ArithmeticTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampling import find_base_policy  # noqa: E402  (bench/sampling.py, next to this file)
from timing import best_of  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def find_prm(data_dir: str) -> str:
    """The PRM notebook 02 uses under the default profile, read from its cached stages (never trained here)."""
    cfg = load_config("02_prm_search", {"profile": "default", "data_dir": data_dir})
    try:
        with cached_only():
            ladder, _ = common.ladder(cfg)
            labels = prm_search.prm_labels(cfg, common.base_policy(cfg, ladder), progress=False)
            return prm_search.train_reward_models(cfg, prm_search.verifier_base(cfg, ladder), labels)[0].path
    except MissingArtifact as e:
        raise SystemExit(f"{e}: the default profile's PRM is needed (`make figures`, or pass --prm PATH)") from None


class GeneratePath:
    """The policy with only the library path: every step is its own `generate` call over all copies."""

    def __init__(self, policy):
        self.policy, self.name, self.non_embedding_params = policy, policy.name, policy.non_embedding_params

    def sample(self, prompts, params, seed):
        return self.policy.sample(prompts, params, seed)

    sample_shared = sample  # the reference: no prefill sharing


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default=None)
    ap.add_argument("--prm", default=None)
    ap.add_argument("--data-dir", default=str(ROOT / "data"), help="the data_dir whose default-profile cache to read")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3, help="timed runs of each method, alternated (best kept)")
    args = ap.parse_args(argv)
    task = ArithmeticTask()
    problems = task.problems("test", args.questions, 0)
    policy = load_policy(ModelSpec(args.policy or find_base_policy(args.data_dir), param="--policy").check(),
                         batch_size=args.batch_size, progress=False)
    prm = load_verifier(ModelSpec(args.prm or find_prm(args.data_dir), backend="auto", param="--prm").check(),
                        batch_size=args.batch_size, progress=False)
    longest = task.max_solution_tokens()
    cfg = SearchConfig("beam", args.budget, min(4, args.budget), max_step_tokens=longest // 8 + 8,
                       max_completion_tokens=longest + 1)
    generations = args.questions * args.budget
    prompts = [task.prompt(p) for p in problems]
    params = SamplingParams(n=args.budget, max_new_tokens=longest + 1)

    def best_of_n():
        bon = policy.sample(prompts, params, seed=0)
        return int(bon.num_tokens.sum()), 0

    def best_of_n_weighted():  # best-of-N as a method: its N samples scored by the PRM to pick one
        bon = policy.sample(prompts, params, seed=0)
        _, tokens = prm.score([p for p in prompts for _ in range(args.budget)],
                              [task.split_steps(task.through_answer(t)) for t in bon.text])
        return int(bon.num_tokens.sum()), sum(tokens)

    def beam(pol):
        def run():
            out = search(pol, prm, task, problems, cfg, seed=0)
            return sum(r["policy_tokens"] for r in out), sum(r["verifier_tokens"] for r in out)
        return run

    methods = {"best-of-N (samples only)": best_of_n, "best-of-N weighted (samples, PRM)": best_of_n_weighted,
               "beam search, shared-prefill sampler": beam(policy), "beam search, generate per step":
               beam(GeneratePath(policy))}
    best, tokens = best_of(args.reps, methods)

    print(f"{args.questions} questions x budget N={args.budget} ({generations} generations), beam width "
          f"{cfg.beam_width}, batch {args.batch_size}, best of {args.reps}, policy {policy.name}, PRM {prm.name}")
    print(f"{'method':38s} {'wall s':>7s} {'ms/generation':>14s} {'policy tok':>11s} {'PRM tok':>9s} "
          f"{'vs best-of-N':>13s} {'vs weighted':>12s}")
    plain, weighted = best["best-of-N (samples only)"], best["best-of-N weighted (samples, PRM)"]
    for name, wall in best.items():
        ptok, vtok = tokens[name]
        print(f"{name:38s} {wall:7.2f} {1000 * wall / generations:14.2f} {ptok:11d} {vtok:9d} "
              f"{wall / plain:12.2f}x {wall / weighted:11.2f}x")

if __name__ == "__main__":
    main()
