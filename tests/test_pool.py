"""The sample pool: byte-identical under a seed, and sharded runs merge into the unsharded pool."""
import pandas as pd
import pytest

from ttc_utils.cache import Cache
from ttc_utils.policy import SamplingParams
from ttc_utils.sampling import sample_problems
from ttc_utils.world import WorldConfig, generate

PROBLEMS = generate(WorldConfig(max_steps=3), 10, "test", seed=0)
PARAMS = SamplingParams(n=3, temperature=1.0, max_new_tokens=8)


def run(root, policy_dir, **kw):
    return sample_problems(Cache(root), str(policy_dir), PROBLEMS, PARAMS, seed=0, questions_per_chunk=3,
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
    monkeypatch.setattr("ttc_utils.sampling.TransformersPolicy.from_pretrained", no_loading)
    again = sample_problems(merged, str(tiny_policy_dir), PROBLEMS, PARAMS, seed=0, questions_per_chunk=3,
                            batch_size=4, name="pool", progress=False)
    pd.testing.assert_frame_equal(again, single)


@pytest.mark.parametrize("kw,name", [({"shard": 2, "num_shards": 2}, "shard"), ({"shard": -1}, "shard"),
                                     ({"num_shards": 0}, "num_shards")])
def test_bad_shards_are_clear_errors(tmp_path, tiny_policy_dir, kw, name):
    with pytest.raises(ValueError, match=name):
        run(tmp_path, tiny_policy_dir, **kw)
