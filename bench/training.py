"""Benchmark: ladder training throughput per rung, fp32 against bf16 autocast, one torch thread against all.

Each rung of the default profile's ladder trains from scratch on the same short prefix of the pretraining corpus
under every (precision, threads) setting, one setting after another for the same rung, so the ratios printed side by
side share this machine's state. It says which precision `train_precision=auto` picks here, and projects each rung
to the profile's full token budget. It trains throwaway models in a temporary folder and never touches the cache.

    python bench/training.py                                # every rung, fp32 and bf16, all threads
    python bench/training.py --threads 1,2 --precisions fp32 --tokens 150000
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from ttc_utils.config import WorldNotebookConfig
from ttc_utils.tokenizer import build_tokenizer
from ttc_utils.training import native_bf16, pretraining_corpus, resolve_precision, train_policy


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=30_000, help="pretraining tokens per run (a prefix of the corpus)")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--threads", default=str(torch.get_num_threads()), help="comma-separated torch thread counts")
    ap.add_argument("--rungs", default="", help="comma-separated rung names (default: every rung)")
    args = ap.parse_args()
    cfg = WorldNotebookConfig()
    sizes = [s for s in cfg.sizes() if not args.rungs or s.name in args.rungs.split(",")]
    settings = [(p, int(t)) for p in args.precisions.split(",") for t in args.threads.split(",")]
    tok = build_tokenizer()
    base = replace(cfg.train(), tokens=args.tokens)  # the profile's recipe on a prefix of its corpus
    corpus = pretraining_corpus(cfg.world(), tok, base.tokens, base.batch_size, base.seed)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16('cpu')}, "
          f"train_precision=auto trains in {resolve_precision('auto')}; {args.tokens:,} tokens per run, "
          f"projected to the profile's {cfg.train_tokens:,}")
    first = settings[0]
    totals = dict.fromkeys(settings, 0.0)
    for size in sizes:
        rate = {}
        for precision, threads in settings:
            train_cfg = replace(base, precision=precision, threads=threads)
            with tempfile.TemporaryDirectory() as d:
                r = train_policy(size, corpus, tok, train_cfg, Path(d), disable_tqdm=True,
                                 learning_rate=train_cfg.rung_learning_rate(size.hidden, min(cfg.ladder_hidden)))
            rate[precision, threads] = r["tokens_per_s"]
            totals[precision, threads] += cfg.train_tokens / r["tokens_per_s"]
            print(f"{size.name:>8} {precision} x{threads}: {r['tokens_per_s']:8,.0f} tokens/s "
                  f"{r['train_flops'] / r['wall_s'] / 1e9:6.1f} GFLOP/s, {r['steps']} steps in {r['wall_s']:.1f} s; "
                  f"{rate[precision, threads] / rate[first]:.2f}x {first[0]} x{first[1]}", flush=True)
    print("projected ladder: " + ", ".join(f"{p} x{t} {s / 60:.1f} min" for (p, t), s in totals.items()))


if __name__ == "__main__":
    main()
