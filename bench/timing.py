"""The benchmarks' timing rule: settings alternate, the best of several runs is kept (these machines are noisy: only
ratios measured together mean anything).

    from timing import best_of   # a benchmark runs as `python bench/NAME.py`, so bench/ is on its path
    seconds, outputs = best_of(3, {"packed": run_packed, "padded": run_padded})
"""
from __future__ import annotations

import time


def best_of(reps: int, runs: dict) -> tuple[dict[str, float], dict]:
    """Best seconds and last output of each of `runs` (name -> callable), alternated `reps` times."""
    best, outs = {name: float("inf") for name in runs}, {}
    for _ in range(reps):
        for name, run in runs.items():
            t0 = time.perf_counter()
            outs[name] = run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, outs
