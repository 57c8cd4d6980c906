"""The cache: content keys, atomic chunk writes, resuming a killed run, and checksums that catch corruption."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pandas as pd
import pytest

from ttc_utils.cache import Cache, CacheCorruptionWarning, content_key


def test_content_key_ignores_key_order_and_sees_values():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})


def test_chunks_resume_after_a_failure_without_recomputing(tmp_path):
    cache, calls = Cache(tmp_path), []

    def compute(i):
        calls.append(i)
        if i == 2 and len(calls) == 3:
            raise KeyboardInterrupt  # the run is interrupted during chunk 2
        return pd.DataFrame({"chunk": [i] * 3, "x": range(3)})

    with pytest.raises(KeyboardInterrupt):
        cache.chunked("t", {"p": 1}, 4, compute)
    assert calls == [0, 1, 2]
    folder = cache.folder("t", {"p": 1})
    assert sorted(p.name for p in folder.glob("chunk-*")) == [  # the finished chunks, each with its checksum
        "chunk-00000.parquet", "chunk-00000.parquet.sha256", "chunk-00001.parquet", "chunk-00001.parquet.sha256"]
    assert not list(folder.glob(".tmp-*"))
    df = cache.chunked("t", {"p": 1}, 4, compute)
    assert calls == [0, 1, 2, 2, 3]  # only the unfinished chunks were computed again
    assert list(df.chunk) == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert cache.chunked("t", {"p": 1}, 4, compute).equals(df) and len(calls) == 5
    cache.chunked("t", {"p": 2}, 1, compute)  # other parameters, other key
    assert len(calls) == 6


def test_a_warm_read_writes_nothing_and_restores_a_missing_meta(tmp_path):
    cache = Cache(tmp_path)
    cache.chunked("t", {"p": 1}, 2, lambda i: pd.DataFrame({"i": [i]}))
    folder = cache.folder("t", {"p": 1})
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    time.sleep(0.01)
    cache.chunked("t", {"p": 1}, 2, lambda i: pd.DataFrame({"i": [i]}))
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    (folder / "meta.json").unlink()
    cache.chunked("t", {"p": 1}, 2, lambda i: pd.DataFrame({"i": [i]}))
    assert json.loads((folder / "meta.json").read_text()) == {"name": "t", "params": {"p": 1}, "num_chunks": 2}


SCRIPT = textwrap.dedent("""
    import sys, time
    import pandas as pd
    from ttc_utils.cache import Cache
    log = open(sys.argv[2], "a")
    def compute(i):
        log.write(f"{i}\\n"); log.flush()
        time.sleep(0.6)
        return pd.DataFrame({"i": [i]})
    print(len(Cache(sys.argv[1]).chunked("killed", {"k": 1}, 6, compute)))
""")


def test_a_killed_process_resumes_losing_at_most_one_chunk(tmp_path):
    script, log = tmp_path / "job.py", tmp_path / "calls.log"
    script.write_text(SCRIPT)
    cmd = [sys.executable, str(script), str(tmp_path / "cache"), str(log)]
    proc = subprocess.Popen(cmd, env={**os.environ, "TQDM_DISABLE": "1"})
    folder = Cache(tmp_path / "cache").folder("killed", {"k": 1})
    deadline = time.time() + 60
    while len(list(folder.glob("chunk-*.parquet"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(folder.glob("chunk-*.parquet")))
    assert 3 <= done_before < 6
    started_before = len(log.read_text().split())
    assert started_before - done_before <= 1  # at most the chunk in flight is lost
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    assert out.stdout.strip() == "6"
    calls = [int(x) for x in log.read_text().split()]
    assert calls[started_before:] == list(range(done_before, 6))  # finished chunks were not recomputed


def test_model_dir_appears_atomically(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError), cache.model_dir("m", {"a": 1}) as (final, work):
        (work / "config.json").write_text("{}")
        raise RuntimeError("killed while saving")
    assert not cache.folder("m", {"a": 1}).exists() and not list(tmp_path.glob(".tmp-*"))
    with cache.model_dir("m", {"a": 1}) as (final, work):
        (work / "config.json").write_text("{}")
    assert (final / "config.json").exists()
    with cache.model_dir("m", {"a": 1}) as (final2, work2):
        assert work2 is None and final2 == final


# --- checksums of chunks ------------------------------------------------------------------------------


def counting(calls):
    def compute(i):
        calls.append(i)
        return pd.DataFrame({"chunk": [i] * 50, "x": [float(j) for j in range(50)], "s": [f"t{j}" for j in range(50)]})
    return compute


def flip_bytes(path, offset=None):
    """Corrupt a file without changing its size: invert bytes in its middle."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at:at + 8] = bytes(b ^ 0xFF for b in data[at:at + 8])
    path.write_bytes(bytes(data))


def test_a_same_size_corrupted_chunk_is_reported_and_recomputed(tmp_path):
    cache, calls = Cache(tmp_path), []
    first = cache.chunked("t", {"p": 1}, 3, counting(calls))
    chunk = cache.folder("t", {"p": 1}) / "chunk-00001.parquet"
    size = chunk.stat().st_size
    flip_bytes(chunk)
    assert chunk.stat().st_size == size
    with pytest.warns(CacheCorruptionWarning, match="checksum mismatch") as record:
        again = cache.chunked("t", {"p": 1}, 3, counting(calls))
    assert [str(chunk) in str(w.message) for w in record] == [True]
    assert calls == [0, 1, 2, 1]  # only the corrupt chunk was computed again
    pd.testing.assert_frame_equal(again, first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: read back silently, nothing recomputed
        pd.testing.assert_frame_equal(cache.chunked("t", {"p": 1}, 3, counting(calls)), first)
    assert len(calls) == 4


def test_a_chunk_without_its_checksum_is_recomputed(tmp_path):
    """A run killed between writing the checksum and the chunk (or an older cache) leaves an unverifiable chunk."""
    cache, calls = Cache(tmp_path), []
    first = cache.chunked("t", {"p": 1}, 3, counting(calls))
    sidecar = cache.folder("t", {"p": 1}) / "chunk-00002.parquet.sha256"
    sidecar.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = cache.chunked("t", {"p": 1}, 3, counting(calls))
    assert calls == [0, 1, 2, 2] and sidecar.exists()
    pd.testing.assert_frame_equal(again, first)


def test_a_garbled_checksum_file_or_unreadable_chunk_is_recomputed(tmp_path):
    cache, calls = Cache(tmp_path), []
    first = cache.chunked("t", {"p": 1}, 2, counting(calls))
    folder = cache.folder("t", {"p": 1})
    (folder / "chunk-00000.parquet.sha256").write_text("")
    (folder / "chunk-00001.parquet").write_bytes(b"not parquet")
    with pytest.warns(CacheCorruptionWarning) as record:
        again = cache.chunked("t", {"p": 1}, 2, counting(calls))
    assert len(record) == 2 and calls == [0, 1, 0, 1]
    pd.testing.assert_frame_equal(again, first)


def test_the_merge_command_merges_shards_and_names_a_missing_one(tmp_path, capsys):
    from ttc_utils.cache import main
    for s in range(2):
        Cache(tmp_path / f"shard{s}").chunked("t", {"shard": s}, 2, counting([]))
    assert main(["merge", str(tmp_path / "all"), str(tmp_path / "shard0"), str(tmp_path / "shard1")]) == 0
    assert "merged 4 chunks from 2 caches" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["merge", str(tmp_path / "all"), str(tmp_path / "nowhere")])
    assert "src='" in capsys.readouterr().err


def test_merge_copies_checksums_and_skips_corrupt_chunks(tmp_path):
    shard = Cache(tmp_path / "shard")
    shard.chunked("t", {"p": 1}, 3, counting([]))
    src = shard.folder("t", {"p": 1})
    flip_bytes(src / "chunk-00002.parquet")
    merged = Cache(tmp_path / "merged")
    with pytest.warns(CacheCorruptionWarning, match="chunk-00002"):
        assert merged.merge_from([tmp_path / "shard"]) == 2
    dst = merged.folder("t", {"p": 1})
    assert sorted(p.name for p in dst.glob("chunk-*")) == [
        "chunk-00000.parquet", "chunk-00000.parquet.sha256", "chunk-00001.parquet", "chunk-00001.parquet.sha256"]
    for name in ["chunk-00000.parquet", "chunk-00001.parquet"]:
        assert (dst / name).read_bytes() == (src / name).read_bytes()
        assert (dst / f"{name}.sha256").read_text() == (src / f"{name}.sha256").read_text()
    assert (dst / "meta.json").exists() and not list(dst.glob(".tmp-*"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheCorruptionWarning)
        assert merged.merge_from([tmp_path / "shard"]) == 0  # intact chunks already here are not copied again
    calls = []
    merged.chunked("t", {"p": 1}, 3, counting(calls))
    assert calls == [2]  # the chunk that was not merged is computed here


# --- manifests of model folders -----------------------------------------------------------------------


def write_model(work, seed=0):
    """A stand-in for save_pretrained: a config and a 64 KiB weight file."""
    (work / "config.json").write_text('{"hidden": 16}')
    (work / "model.safetensors").write_bytes(os.urandom(1 << 16) if seed is None else bytes([seed]) * (1 << 16))
    (work / "tokenizer").mkdir()
    (work / "tokenizer" / "tokenizer.json").write_text("{}")


def build(cache):
    """(final, work) of model_dir("m"), writing a model when one is needed (work is not None)."""
    with cache.model_dir("m", {"a": 1}) as (final, work):
        if work is not None:
            write_model(work)
    return final, work


def test_model_dir_writes_a_manifest_of_every_file(tmp_path):
    cache = Cache(tmp_path)
    with cache.model_dir("m", {"a": 1}) as (final, work):
        write_model(work)
    manifest = cache.model_manifest(final)
    assert sorted(manifest) == ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    assert manifest["model.safetensors"] == hashlib.sha256(bytes([0]) * (1 << 16)).hexdigest()
    assert cache.verify_model_dir(final) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_weight_file_is_reported_and_the_folder_rebuilt(tmp_path, damage):
    cache = Cache(tmp_path)
    with cache.model_dir("m", {"a": 1}) as (final, work):
        write_model(work)
    weights = final / "model.safetensors"
    data = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(data[:len(data) // 2])
    elif damage == "flip":
        flip_bytes(weights)
        assert weights.stat().st_size == len(data)
    else:
        weights.unlink()
    problems = cache.verify_model_dir(final)
    assert len(problems) == 1 and str(weights) in problems[0]
    assert cache.model_manifest(final) is None or damage == "flip"  # sizes no longer match the manifest
    with pytest.warns(CacheCorruptionWarning, match="rebuilding") as record:
        final2, work2 = build(cache)
    assert final2 == final and work2 is not None and work2 != final
    assert len(record) == 1 and str(weights) in str(record[0].message)
    assert weights.read_bytes() == data and cache.verify_model_dir(final) == []
    assert not list(tmp_path.glob(".tmp-*"))
    assert build(cache)[1] is None  # repaired: reused as is


def test_a_rebuild_that_fails_keeps_the_old_folder(tmp_path):
    cache = Cache(tmp_path)
    with cache.model_dir("m", {"a": 1}) as (final, work):
        write_model(work)
    flip_bytes(final / "config.json", offset=2)
    with pytest.warns(CacheCorruptionWarning, match="config.json"), pytest.raises(RuntimeError), \
            cache.model_dir("m", {"a": 1}):
        raise RuntimeError("killed while rebuilding")
    assert (final / "model.safetensors").exists() and not list(tmp_path.glob(".tmp-*"))


def test_a_folder_from_before_manifests_is_adopted_once(tmp_path):
    cache = Cache(tmp_path)
    final = cache.folder("m", {"a": 1})
    final.mkdir(parents=True)
    write_model(final)
    (final / "meta.json").write_text('{"name": "m", "params": {"a": 1}}')
    assert cache.model_manifest(final) is None and cache.verify_model_dir(final) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build(cache)[1] is None
    meta = json.loads((final / "meta.json").read_text())
    assert meta["params"] == {"a": 1} and sorted(meta["files"]) == sorted(cache.model_manifest(final))
    flip_bytes(final / "model.safetensors")
    assert cache.verify_model_dir(final)  # from now on it is checked


def test_a_folder_without_config_is_rebuilt(tmp_path):
    cache = Cache(tmp_path)
    final = cache.folder("m", {"a": 1})
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"half")
    assert build(cache)[1] is not None
    assert cache.verify_model_dir(final) == [] and (final / "model.safetensors").stat().st_size == 1 << 16


def test_cached_only_reads_what_is_cached_and_names_what_is_not(tmp_path):
    from ttc_utils.cache import MissingArtifact, cached_only
    cache = Cache(tmp_path)
    first = cache.chunked("t", {"p": 1}, 2, counting([]))
    with cached_only():
        pd.testing.assert_frame_equal(cache.chunked("t", {"p": 1}, 2, counting([])), first)  # cached: read
        with pytest.raises(MissingArtifact, match="'t' \\(2 of 2 chunks\\) is not in the cache"):
            cache.chunked("t", {"p": 2}, 2, counting([]))
        with pytest.raises(MissingArtifact, match="the model 'm' is not in the cache"):
            with cache.model_dir("m", {"p": 1}):
                pass
    assert not cache.folder("t", {"p": 2}).exists() and not cache.folder("m", {"p": 1}).exists()
    assert len(cache.chunked("t", {"p": 2}, 2, counting([]))) == len(first)  # outside the block: computed
