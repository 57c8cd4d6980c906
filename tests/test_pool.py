"""The sample pool: byte-identical under a seed, and sharded runs merge into the unsharded pool."""
import pandas as pd
import pytest

from ttc_utils.cache import Cache
from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SamplingParams
from ttc_utils.sampling import sample_problems
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.world import WorldConfig, generate

TASK = ArithmeticTask(WorldConfig(max_steps=3))
PROBLEMS = generate(WorldConfig(max_steps=3), 10, "test", seed=0)
PARAMS = SamplingParams(n=3, temperature=1.0, max_new_tokens=8)


def run(root, policy_dir, **kw):
    return sample_problems(Cache(root), ModelSpec(str(policy_dir)), TASK, PROBLEMS, PARAMS, seed=0,
                           questions_per_chunk=3,
                           batch_size=4, name="pool", progress=False, **kw)


def chunk_bytes(root):
    return {p.name: p.read_bytes() for p in sorted(Cache(root).root.glob("pool-*/chunk-*.parquet"))}


def test_same_seed_gives_byte_identical_pool_files(tmp_path, tiny_policy_dir):
    a = run(tmp_path / "a", tiny_policy_dir)
    b = run(tmp_path / "b", tiny_policy_dir)
    assert a.equals(b)
    assert chunk_bytes(tmp_path / "a") == chunk_bytes(tmp_path / "b") and len(chunk_bytes(tmp_path / "a")) == 4
    assert set(a.columns) >= {"qid", "sample_index", "text", "answer", "correct", "num_tokens", "seed"}
    assert len(a) == len(PROBLEMS) * PARAMS.n


def test_sharded_runs_merge_into_the_unsharded_pool(tmp_path, tiny_policy_dir, monkeypatch):
    single = run(tmp_path / "single", tiny_policy_dir)
    parts = [run(tmp_path / f"shard{s}", tiny_policy_dir, shard=s, num_shards=2) for s in range(2)]
    assert set(parts[0].qid).isdisjoint(parts[1].qid)
    assert sum(map(len, parts)) == len(single)
    merged = Cache(tmp_path / "merged")
    assert merged.merge_from([tmp_path / "shard0", tmp_path / "shard1"]) == 4
    assert chunk_bytes(tmp_path / "merged") == chunk_bytes(tmp_path / "single")
    # the merged cache answers the unsharded call without sampling (no policy is even loaded)
    def no_loading(*a, **k):
        raise AssertionError("the policy was loaded although every chunk was cached")
    monkeypatch.setattr("ttc_utils.sampling.kept_policy", no_loading)
    again = sample_problems(merged, ModelSpec(str(tiny_policy_dir)), TASK, PROBLEMS, PARAMS, seed=0,
                            questions_per_chunk=3,
                            batch_size=4, name="pool", progress=False)
    pd.testing.assert_frame_equal(again, single)


@pytest.mark.parametrize("kw,name", [({"shard": 2, "num_shards": 2}, "shard"), ({"shard": -1}, "shard"),
                                     ({"num_shards": 0}, "num_shards")])
def test_bad_shards_are_clear_errors(tmp_path, tiny_policy_dir, kw, name):
    with pytest.raises(ValueError, match=name):
        run(tmp_path, tiny_policy_dir, **kw)


KILL_SCRIPT = """
import sys
from ttc_utils.cache import Cache
from ttc_utils.policy import SamplingParams
from ttc_utils.model_spec import ModelSpec
from ttc_utils.sampling import sample_problems
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.world import WorldConfig, generate
problems = generate(WorldConfig(max_steps=3), 12, "test", seed=0)
pool = sample_problems(Cache(sys.argv[1]), ModelSpec(sys.argv[2]), ArithmeticTask(), problems,
                       SamplingParams(n=64, max_new_tokens=24), seed=0, questions_per_chunk=1, batch_size=64,
                       name="pool", progress=False)
print(len(pool))
"""


def test_killed_pool_sampling_resumes_losing_at_most_one_chunk(tmp_path, tiny_policy_dir):
    """Kill a real sampling job mid-way (SIGKILL), rerun: finished chunks are kept, not sampled again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    cmd = [sys.executable, str(script), str(tmp_path / "cache"), str(tiny_policy_dir)]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    deadline = time.time() + 120
    chunks = lambda: sorted((tmp_path / "cache").glob("pool-*/chunk-*.parquet"))  # noqa: E731
    while len(chunks()) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in chunks()}
    assert 3 <= len(before) < 12, "the job should have been killed mid-way"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(12 * 64)
    after = {p.name: p.stat().st_mtime_ns for p in chunks()}
    assert len(after) == 12
    assert all(after[name] == t for name, t in before.items())  # finished chunks were not recomputed


def test_shard_chunks_deal_every_chunk_of_every_job_to_exactly_one_shard():
    from ttc_utils.sampling import shard_chunks
    counts = [1, 1, 4, 1, 3]
    assert shard_chunks(counts, 0, 1) == [None] * 5
    shares = [shard_chunks(counts, s, 3) for s in range(3)]
    for job, n in enumerate(counts):
        owned = sorted(i for share in shares for i in share[job])
        assert owned == list(range(n))  # each chunk once
    assert [sum(map(len, share)) for share in shares] == [4, 3, 3]  # dealt in turn: 10 chunks over 3 shards
    assert shares[0][2] == [1] and shares[1][2] == [2] and shares[2][2] == [0, 3]
    with pytest.raises(ValueError, match="shard"):
        shard_chunks(counts, 3, 3)
