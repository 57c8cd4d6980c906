"""Benchmark: the vLLM backend against the suite's transformers sampler, side by side in one run, on one model.

By default it reads the default profile's base policy from what `make figures` cached (vLLM reads it through an exact
copy with 32-wide heads, `ttc_utils.head_padding`, since its CPU attention does not take the ladder's 16-wide ones);
completions then end at the policy's eos, and tokens/s counts the tokens each backend sampled. `--random` builds a
Llama of the base rung's shape with random weights instead (tokens/s depends on shapes, not on weights), whose
completions all run to `--tokens`. Run it in the vLLM environment:

    make test-vllm                                     # builds .venv-vllm once
    .venv-vllm/bin/python bench/vllm_sampling.py       # or --policy PATH, or --random

On a GPU, with a real model on MATH-500 (what `bench/gpu_check.sh` runs; completions then end at the model's eos):

    python bench/vllm_sampling.py --policy Qwen/Qwen2.5-Math-1.5B-Instruct --task math --device cuda --dtype bfloat16
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SamplingParams
from ttc_utils.registry import load_policy
from ttc_utils.tasks import get_task
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.tokenizer import build_tokenizer
from ttc_utils.world import WorldConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampling import ROOT, find_base_policy  # noqa: E402  (bench/sampling.py, next to this file)


def random_model(folder: str, hidden: int, layers: int) -> str:
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=hidden // 16, num_key_value_heads=hidden // 16,
                         max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.vocab_size + 10,  # no token: every completion runs to the cap
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def timed(policy, prompts, params, seed=0) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = policy.sample(prompts, params, seed)
    return time.perf_counter() - t0, int(out.num_tokens.sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", help="a model folder or hub id (default: the default profile's base policy)")
    ap.add_argument("--random", action="store_true", help="a random Llama of --hidden x --layers built here")
    ap.add_argument("--data-dir", default=str(ROOT / "data"), help="the data_dir whose default-profile cache to read")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--task", choices=("arithmetic", "math"), default="arithmetic")
    ap.add_argument("--task-path", help="math: a local MATH-500 .jsonl (default: the hub)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = (random_model(tmp, args.hidden, args.layers) if args.random
                else args.policy or find_base_policy(args.data_dir))
        task = (ArithmeticTask(WorldConfig()) if args.task == "arithmetic"
                else get_task("math", path=args.task_path, prompt_style="chatml"))
        prompts = [task.prompt(p) for p in task.problems("test", args.questions, seed=0)]
        params = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.tokens)
        rows = {}
        for backend in ("transformers", "vllm"):
            spec = ModelSpec(path, backend=backend, dtype=args.dtype, device=args.device, param="--policy")
            policy = load_policy(spec, progress=False)
            timed(policy, prompts[:4], params)  # warm-up: engine start, first compilation
            rows[backend] = timed(policy, prompts, params)
            del policy  # one model on the device at a time
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        print(f"{args.questions} prompts x {args.n} samples x {args.tokens} tokens, model {path}")
        for backend, (secs, tokens) in rows.items():
            print(f"  {backend:>12}: {tokens:>7,} tokens in {secs:6.2f} s = {tokens / secs:9,.0f} tokens/s")
        (t_s, t_n), (v_s, v_n) = rows["transformers"], rows["vllm"]
        print(f"  vllm / transformers tokens/s: {(v_n / v_s) / (t_n / t_s):.2f}x")


if __name__ == "__main__":
    main()
