"""Benchmark: the suite's batched sampler against a naive one-prompt-at-a-time `model.generate` loop.

Both run in the same process, on the same base policy and prompts, side by side (this machine is noisy,
so only ratios measured together mean anything); so does the suite's sampler with the library's own KV cache
(`DynamicCache`) in place of its growing one (`ttc_utils.kv_cache`): the same samples, a per-step copy of the cache.
Also prints a matmul-bound estimate of tokens/s for the model's shapes, measured in the same run, and the
shared-prefill sampler on revision prompts (0-4 previous attempts before the question, as notebook 03's chains send)
with its prefill in length groups against one prefill padded to the longest prompt: the same samples.

    python bench/sampling.py                       # the default profile's base policy, as `make figures` cached it
    python bench/sampling.py --policy PATH --questions 64 --n 16 --naive 32
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import DynamicCache

import ttc_utils.transformers_policy as transformers_policy
from ttc_utils.cache import MissingArtifact, cached_only
from ttc_utils.config import load_config
from ttc_utils.model_spec import ModelSpec
from ttc_utils.models import load_causal_lm
from ttc_utils.policy import SamplingParams
from ttc_utils.registry import load_policy
from ttc_utils.stages import common
from ttc_utils.tasks.arithmetic import ArithmeticTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402  (bench/timing.py, next to this file)

ROOT = Path(__file__).resolve().parent.parent


def find_base_policy(data_dir: str | Path = ROOT / "data") -> str:
    """The base policy the default profile's notebooks sample from, read from its cached ladder (never trained here)."""
    cfg = load_config("01_difficulty_bins", {"profile": "default", "data_dir": str(data_dir)})
    try:
        with cached_only():
            ladder, _ = common.ladder(cfg)
    except MissingArtifact as e:
        raise SystemExit(f"{e}: the default profile's ladder is needed (`make figures`, or --policy PATH)") from None
    return common.base_policy(cfg, ladder).path


def naive_loop(model, tok, prompts: list[str], max_new_tokens: int, temperature: float):
    """What a newcomer writes: one generate call per sample."""
    tokens = 0
    for p in prompts:
        ids = tok(p, return_tensors="pt").input_ids
        out = model.generate(ids, do_sample=True, temperature=temperature, top_k=0, max_new_tokens=max_new_tokens,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        tokens += out.shape[1] - ids.shape[1]
    return tokens


def matmul_bound(model, seconds: float = 2.0) -> tuple[float, float]:
    """(measured matmul GFLOP/s at the MLP's shapes, FLOPs per generated token) for this model."""
    cfg = model.config
    d, ff, vocab, layers = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    x, w = torch.randn(1024, d), torch.randn(d, ff)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x @ w
        n += 1
    gflops = 2 * 1024 * d * ff * n / (time.perf_counter() - t0) / 1e9
    ctx = 64  # a typical context length in the world
    flops_per_token = 2 * layers * (4 * d * d + 3 * d * ff + 2 * ctx * d) + 2 * d * vocab
    return gflops, flops_per_token


def revision_prompts(task, problems, samples, copies: int = 4) -> list[str]:
    """`copies` prompts per question, copy c after (i + c) % 5 of its own samples c*4, c*4+1, ... as previous
    attempts: distinct prompts of 15 to a few hundred tokens, as a revision chain's step sends."""
    texts = samples.groupby("prompt_index").text.apply(list)
    return [task.prompt(p, texts[i][4 * c:4 * c + (i + c) % 5]) for c in range(copies) for i, p in enumerate(problems)]


def grouped_vs_padded_prefill(policy, prompts: list[str], params: SamplingParams, reps: int) -> dict[str, float]:
    """Best-of-`reps` seconds of `sample_shared` on `prompts` with the prefill in length groups and in one padded
    batch, alternated; asserts the samples are the same."""
    settings = {"grouped": transformers_policy.PREFILL_TOKENS, "padded": 10**12}

    def prefill_in(tokens: int):
        def run():
            transformers_policy.PREFILL_TOKENS = tokens
            return policy.sample_shared(prompts, params, seed=0)
        return run

    try:
        best, outs = best_of(reps, {name: prefill_in(tokens) for name, tokens in settings.items()})
    finally:
        transformers_policy.PREFILL_TOKENS = settings["grouped"]
    assert outs["grouped"].equals(outs["padded"]), "the grouped prefill changed the samples"
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default=None, help="model folder (default: the base policy in data/cache)")
    ap.add_argument("--data-dir", default=str(ROOT / "data"), help="the data_dir whose default-profile cache to read")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--n", type=int, default=16, help="samples per question for the batched sampler (>= 16: the "
                    "revision prompts take their previous attempts from them)")
    ap.add_argument("--naive", type=int, default=32, help="samples drawn by the naive loop")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3, help="timed runs of the suite's sampler per KV cache (best kept)")
    ap.add_argument("--max-new-tokens", type=int, default=ArithmeticTask().max_solution_tokens() + 1,
                    help="default: the world's longest correct solution, as the notebooks use")
    args = ap.parse_args()
    path = args.policy or find_base_policy(args.data_dir)
    torch.set_num_threads(torch.get_num_threads())
    task = ArithmeticTask()
    prompts = [task.prompt(p) for p in task.problems("test", args.questions, seed=0)]
    params = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens)
    policy = load_policy(ModelSpec(path, param="--policy").check(), batch_size=args.batch_size, progress=False)
    model, tok = load_causal_lm(path)

    policy.sample(prompts[:4], SamplingParams(n=2, max_new_tokens=8), seed=0)  # warm-up
    caches = {"growing": policy.make_cache, "library": lambda config: DynamicCache(config=config)}

    def sample_with(make):
        def run():
            policy.make_cache = make
            return policy.sample(prompts, params, seed=0)
        return run

    # alternated, best of each: a first large call pays for fresh memory
    best, outs = best_of(args.reps, {name: sample_with(make) for name, make in caches.items()})
    out, library, t_suite, t_library = outs["growing"], outs["library"], best["growing"], best["library"]
    assert library.equals(out), "the growing KV cache changed the samples"
    naive_prompts = [prompts[i % len(prompts)] for i in range(args.naive)]
    t0 = time.perf_counter()
    naive_tokens = naive_loop(model, tok, naive_prompts, args.max_new_tokens, 1.0)
    t_naive = time.perf_counter() - t0
    gflops, fpt = matmul_bound(model)
    problems = task.problems("test", args.questions, seed=0)
    revision = revision_prompts(task, problems, out)
    one = SamplingParams(n=1, temperature=1.0, max_new_tokens=args.max_new_tokens)
    prefill = grouped_vs_padded_prefill(policy, revision, one, args.reps)

    suite_sps, naive_sps = len(out) / t_suite, args.naive / t_naive
    suite_tps, naive_tps = out.num_tokens.sum() / t_suite, naive_tokens / t_naive
    bound_tps = gflops * 1e9 / fpt
    print(f"policy: {path} ({policy.non_embedding_params:,} non-embedding params), "
          f"{torch.get_num_threads()} threads")
    print(f"{'sampler':<34}{'samples':>9}{'samples/s':>12}{'tokens/s':>12}")
    print(f"{'suite (batched generate)':<34}{len(out):>9}{suite_sps:>12.1f}{suite_tps:>12.0f}")
    print(f"{'suite, library KV cache':<34}{len(library):>9}{len(library) / t_library:>12.1f}"
          f"{library.num_tokens.sum() / t_library:>12.0f}")
    print(f"{'naive (generate, one at a time)':<34}{args.naive:>9}{naive_sps:>12.1f}{naive_tps:>12.0f}")
    print(f"growing / library KV cache: {t_library / t_suite:.2f}x (identical samples)")
    print(f"speed-up suite / naive: {suite_sps / naive_sps:.1f}x samples/s, {suite_tps / naive_tps:.1f}x tokens/s")
    print(f"matmul-bound estimate: {gflops:.1f} GFLOP/s at the MLP's shapes, {fpt / 1e6:.2f} MFLOP per token "
          f"-> {bound_tps:,.0f} tokens/s; suite reaches {suite_tps / bound_tps:.1%} of it")
    lengths = [len(p) for p in policy.tokenizer(revision).input_ids]
    print(f"shared-prefill sampler, {len(revision)} revision prompts of {min(lengths)}-{max(lengths)} tokens "
          f"(mean {sum(lengths) / len(lengths):.0f}): prefill in length groups {prefill['grouped']:.2f} s, padded to "
          f"the longest {prefill['padded']:.2f} s: {prefill['padded'] / prefill['grouped']:.2f}x (identical samples)")


if __name__ == "__main__":
    main()
