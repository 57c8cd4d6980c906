"""The cache: content keys, atomic chunk writes, and resuming a killed run without recomputing."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from ttc_utils.cache import Cache, content_key


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
    assert sorted(p.name for p in folder.glob("chunk-*")) == ["chunk-00000.parquet", "chunk-00001.parquet"]
    assert not list(folder.glob(".tmp-*"))
    df = cache.chunked("t", {"p": 1}, 4, compute)
    assert calls == [0, 1, 2, 2, 3]  # only the unfinished chunks were computed again
    assert list(df.chunk) == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert cache.chunked("t", {"p": 1}, 4, compute).equals(df) and len(calls) == 5
    cache.chunked("t", {"p": 2}, 1, compute)  # other parameters, other key
    assert len(calls) == 6


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
    with pytest.raises(RuntimeError):
        with cache.model_dir("m", {"a": 1}) as (final, work):
            (work / "config.json").write_text("{}")
            raise RuntimeError("killed while saving")
    assert not cache.folder("m", {"a": 1}).exists() and not list(tmp_path.glob(".tmp-*"))
    with cache.model_dir("m", {"a": 1}) as (final, work):
        (work / "config.json").write_text("{}")
    assert (final / "config.json").exists()
    with cache.model_dir("m", {"a": 1}) as (final2, work2):
        assert work2 is None and final2 == final
