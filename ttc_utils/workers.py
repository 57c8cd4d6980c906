"""Independent cached jobs run in worker processes, each on one torch thread.

The embedded world's models are small: a second torch thread buys little (measured on 2 cores: search 1.05-1.2x,
training 1.4-1.6x), while a second process on the other core nearly doubles the work done (two one-thread searches
side by side each ran at 0.85-1.0x the speed of one alone). So where a stage has many independent jobs (search runs x
seeds x chunks, a table's chunks, the validity seeds' ladders) it hands them to `run_jobs`, which runs them in forked
workers, in the order given (largest first). Notebook 02's search took 1,204 s this way instead of 1,657.

Each job writes its own cache entry, and the caller then reads the cache as a serial run would. Sampling and scoring
give the same bytes on one thread as on two (tested), so what a job writes does not depend on where it ran; training
does depend on the thread count, so a training job pins it (`TrainConfig.threads`, as the validity ladders do).

    run_jobs([partial(run_search, ..., only=[c]) for c in pending], workers=cfg.cpu_workers(), desc="search")
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import torch
import tqdm.std as tqdm_std
from tqdm.auto import tqdm

_JOBS: list[Callable[[], object]] = []  # the jobs of the current `run_jobs`, inherited by its forked workers
_IN_WORKER = [False]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def can_fork() -> bool:
    """Workers are forked (they inherit the jobs and any loaded model); only on Linux, where forking after torch
    and the tokenizers started is safe (macOS's system libraries are not fork-safe)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


@contextmanager
def torch_threads(n: int):
    """Run the block on `n` torch threads (0: leave the count alone). Training floats depend on the count (the
    backward pass's reductions split differently); sampling and scoring here gave the same bytes at 1 and 2."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_worker() -> None:
    _IN_WORKER[0] = True
    torch.set_num_threads(1)
    # The parent's bar is the stage's one bar: a worker's own bars and prints would interleave with it (its warnings
    # are sent back, `_run`). In a notebook a bar is a widget, whose messages a forked kernel refuses with a warning
    # per update, so bars are switched off at their root class.
    sys.stdout = sys.stderr = open(os.devnull, "w")
    init = tqdm_std.tqdm.__init__

    def quiet(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "disable": True})
    tqdm_std.tqdm.__init__ = quiet


def _run(i: int) -> list[tuple[type, str]]:
    """Job i; returns the warnings it raised (category, message), for the parent to raise again."""
    with warnings.catch_warnings(record=True) as caught:
        _JOBS[i]()
    return [(w.category, str(w.message)) for w in caught]


def run_jobs(jobs: list[Callable[[], object]], workers: int, desc: str = "jobs", progress: bool = True) -> None:
    """Call every job (a function of no arguments that writes its result to the cache) in up to `workers` forked
    processes of one torch thread each; here, one after another on the caller's threads, with one worker, inside a
    worker, or where forking is not safe. Jobs are handed out in the given order as workers free up: put the largest
    first. An exception in a job stops the others and is raised here; whatever finished is cached, so a rerun
    resumes."""
    global _JOBS
    workers = min(workers, len(jobs))
    bar = tqdm(total=len(jobs), desc=desc, disable=not (jobs and progress) or None)
    if workers <= 1 or _IN_WORKER[0] or not can_fork():
        for job in jobs:
            job()
            bar.update(1)
        bar.close()
        return
    # the tokenizers library warns on stderr when its thread pool was used before a fork, unless this is set
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _JOBS = list(jobs)
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
            for caught in pool.imap_unordered(_run, range(len(_JOBS))):
                for category, message in caught:
                    warnings.warn(message, category, stacklevel=2)
                bar.update(1)
    finally:
        _JOBS = []
        bar.close()
