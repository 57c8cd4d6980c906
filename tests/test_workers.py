"""Jobs in worker processes: every job runs once, a worker on one torch thread, and what the workers cache is what one
process would have; the thread-count invariance of sampling that this relies on."""
import os
from functools import partial

import pytest
import torch

from ttc_utils.workers import can_fork, run_jobs, torch_threads, usable_cores

needs_fork = pytest.mark.skipif(not can_fork(), reason="workers are forked on Linux only")


def _record(path, i):
    (path / f"{i}.txt").write_text(f"{os.getpid()} {torch.get_num_threads()}")


@needs_fork
def test_jobs_run_once_each_in_forked_workers_on_one_thread(tmp_path):
    run_jobs([partial(_record, tmp_path, i) for i in range(6)], workers=2, progress=False)
    seen = [(tmp_path / f"{i}.txt").read_text().split() for i in range(6)]
    assert all(pid != str(os.getpid()) for pid, _ in seen)
    assert {threads for _, threads in seen} == {"1"}


def test_one_worker_runs_the_jobs_here_on_the_callers_threads(tmp_path):
    run_jobs([partial(_record, tmp_path, i) for i in range(3)], workers=1, progress=False)
    assert [(tmp_path / f"{i}.txt").read_text() for i in range(3)] == [f"{os.getpid()} {torch.get_num_threads()}"] * 3


def test_a_training_job_pins_its_threads_and_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def _fail():
    raise ValueError("job 1 went wrong")


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_in_a_job_is_raised_here(tmp_path, workers):
    with pytest.raises(ValueError, match="job 1 went wrong"):
        run_jobs([partial(_record, tmp_path, 0), _fail], workers=workers, progress=False)


def test_no_jobs_start_no_workers():
    run_jobs([], workers=4, progress=False)


@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores to compare one thread with two")
def test_sampling_gives_the_same_tokens_on_one_thread_and_on_two():
    """Workers sample on one thread where the parent would use all: the sampler's floats must not depend on it."""
    from ttc_utils.models import ModelSize, build_policy
    from ttc_utils.policy import SamplingParams
    from ttc_utils.tokenizer import build_tokenizer
    from ttc_utils.transformers_policy import TransformersPolicy

    tok = build_tokenizer()
    policy = TransformersPolicy(build_policy(ModelSize(64, 3, 4), tok, max_len=160, seed=0).eval(), tok,
                                batch_size=256, progress=False)
    prompts = [f"Q:{a}+{b}*{a}-{b}\n" for a in range(8) for b in range(8)]
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=24, stop=("\n",))
    with torch_threads(1):
        one = policy.sample_shared(prompts, params, seed=3)
    with torch_threads(2):
        two = policy.sample_shared(prompts, params, seed=3)
    assert one.equals(two)


@needs_fork
def test_search_chunks_cached_by_workers_are_those_of_one_process(tiny_policy_dir, tiny_verifier_dir, tmp_path):
    from ttc_utils.cache import Cache
    from ttc_utils.model_spec import ModelSpec
    from ttc_utils.search import SearchConfig, pending_search_chunks, run_search
    from ttc_utils.tasks.arithmetic import ArithmeticTask
    from ttc_utils.world import WorldConfig, generate

    task, problems = ArithmeticTask(), generate(WorldConfig(max_steps=3), 6, "test", seed=0)
    cfg = SearchConfig("beam", 4, 2, max_step_tokens=8, max_completion_tokens=30)
    specs = ModelSpec(str(tiny_policy_dir)), ModelSpec(str(tiny_verifier_dir))
    args = (*specs, task, problems, cfg, 0)
    serial = run_search(Cache(tmp_path / "serial"), *args, sequences_per_chunk=8, progress=False)
    cache = Cache(tmp_path / "workers")
    pending = pending_search_chunks(cache, *args, sequences_per_chunk=8)
    assert pending == [0, 1, 2]
    run_jobs([partial(run_search, cache, *args, sequences_per_chunk=8, progress=False, only=[c]) for c in pending],
             workers=2, progress=False)
    assert pending_search_chunks(cache, *args, sequences_per_chunk=8) == []
    for a in sorted((tmp_path / "serial").glob("search-*/chunk-*.parquet")):
        assert (tmp_path / "workers" / a.parent.name / a.name).read_bytes() == a.read_bytes()
    assert run_search(cache, *args, sequences_per_chunk=8, progress=False).equals(serial)


def _chunk(i):
    import pandas as pd
    return pd.DataFrame({"chunk": [i] * 3, "value": [i * 10 + j for j in range(3)], "pid": os.getpid()})


@needs_fork
def test_a_cache_with_workers_computes_missing_chunks_in_them_and_reads_them_in_order(tmp_path):
    from ttc_utils.cache import Cache

    cache = Cache(tmp_path, workers=2)
    cache.chunked("t", {"a": 1}, 5, _chunk, progress=False)
    (next(tmp_path.glob("t-*")) / "chunk-00003.parquet").unlink()
    table = cache.chunked("t", {"a": 1}, 5, _chunk, progress=False)  # the one lost chunk: computed here, alone
    assert table.chunk.tolist() == [i for i in range(5) for _ in range(3)]
    assert table.value.tolist() == [i * 10 + j for i in range(5) for j in range(3)]
    pids = table.groupby("chunk").pid.first()
    assert (pids.drop(3) != os.getpid()).all() and pids[3] == os.getpid()


def _warn_and_print():
    import warnings

    print("a worker's print")
    warnings.warn("a worker's warning", UserWarning)


@needs_fork
def test_a_workers_warnings_reach_the_parent_and_its_prints_do_not(capfd):
    with pytest.warns(UserWarning, match="a worker's warning"):
        run_jobs([_warn_and_print, _warn_and_print], workers=2, progress=False)
    assert "a worker's print" not in capfd.readouterr().out


def _bar_state(path):
    from tqdm.auto import tqdm

    (path / f"{os.getpid()}.txt").write_text(str(tqdm(total=3, disable=False).disable))


@needs_fork
def test_progress_bars_are_off_in_workers(tmp_path):
    """In a notebook a bar is a widget, and a forked kernel warns on every one of its messages."""
    run_jobs([partial(_bar_state, tmp_path)] * 2, workers=2, progress=False)
    assert {f.read_text() for f in tmp_path.glob("*.txt")} == {"True"}
