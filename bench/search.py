"""Benchmark: step-level search against best-of-N at the same generation budget, side by side in one run.

For one budget N on the same questions, prints wall time per generation (one generation = one full
solution's worth of budget) of:
  - best-of-N: N full samples per question in one batched `sample` call (no verifier);
  - beam search (M = 4) with the shared-prefill KV-cache sampler the suite uses;
  - the same beam search with the library `generate` path for every step (the reference);
and the PRM scoring cost inside the search. Only ratios measured together mean anything here.

    python bench/search.py                              # default profile's base policy and PRM
    python bench/search.py --questions 64 --budget 16
"""
from __future__ import annotations

import argparse
import sys
import time
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
    rows = []

    t0 = time.perf_counter()
    bon = policy.sample([task.prompt(p) for p in problems],
                        SamplingParams(n=args.budget, max_new_tokens=longest + 1), seed=0)
    rows.append(("best-of-N (full samples, generate)", time.perf_counter() - t0, int(bon.num_tokens.sum()), 0))

    for label, pol in (("beam search, shared-prefill sampler", policy),
                       ("beam search, generate per step", GeneratePath(policy))):
        t0 = time.perf_counter()
        out = search(pol, prm, task, problems, cfg, seed=0)
        rows.append((label, time.perf_counter() - t0, sum(r["policy_tokens"] for r in out),
                     sum(r["verifier_tokens"] for r in out)))

    t0 = time.perf_counter()
    prm.score([task.prompt(p) for p in problems for _ in range(args.budget)],
              [task.split_steps(task.through_answer(t)) for t in bon.text])
    score_s = time.perf_counter() - t0

    print(f"{args.questions} questions x budget N={args.budget} ({generations} generations), beam width "
          f"{cfg.beam_width}, batch {args.batch_size}, policy {policy.name}, PRM {prm.name}")
    print(f"{'method':40s} {'wall s':>8s} {'ms/generation':>14s} {'policy tok':>11s} {'PRM tok':>9s} "
          f"{'vs best-of-N':>13s}")
    base = rows[0][1]
    for label, wall, ptok, vtok in rows:
        print(f"{label:40s} {wall:8.2f} {1000 * wall / generations:14.2f} {ptok:11d} {vtok:9d} {wall / base:12.2f}x")
    print(f"{'(PRM scoring of the N full samples)':40s} {score_s:8.2f} {1000 * score_s / generations:14.2f}")


if __name__ == "__main__":
    main()
