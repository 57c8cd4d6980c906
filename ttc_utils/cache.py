"""The artifact cache: Parquet tables and model folders keyed by a hash of everything that produced them.

Layout: `<root>/<name>-<key>/` holds `chunk-00000.parquet`, ... and `meta.json` (the parameters
hashed into the key). Each chunk is written to a temporary file and renamed into place, so a killed
run leaves only whole chunks behind and a rerun resumes from the first missing one.

    cache = Cache("data/cache/default")
    table = cache.chunked("samples", params, num_chunks, compute_chunk)  # compute_chunk(i) -> DataFrame
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm


def content_key(params: dict) -> str:
    """A short stable hash of JSON-serialisable parameters (key order does not matter)."""
    blob = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write `df` next to `path` and rename it into place: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)


class Cache:
    """Content-addressed artifacts under one root folder (one per profile)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def folder(self, name: str, params: dict) -> Path:
        return self.root / f"{name}-{content_key(params)}"

    def chunked(self, name: str, params: dict, num_chunks: int, compute: Callable[[int], pd.DataFrame],
                desc: str | None = None, only: list[int] | None = None) -> pd.DataFrame:
        """The concatenation of `compute(i)` for i < num_chunks, computing only the chunks not on disk.

        `params` must name everything that changes the result (model, parameters, seed, chunking).
        With `only`, just those chunks are computed and returned (one shard of a sharded job).
        """
        if num_chunks < 1:
            raise ValueError(f"num_chunks={num_chunks} is not allowed: expected an int >= 1")
        folder = self.folder(name, params)
        write_json_atomic({"name": name, "params": params, "num_chunks": num_chunks}, folder / "meta.json")
        paths = [folder / f"chunk-{i:05d}.parquet" for i in range(num_chunks)]
        wanted = range(num_chunks) if only is None else sorted(only)
        todo = [i for i in wanted if not paths[i].exists()]
        for i in tqdm(todo, desc=desc or name, disable=not todo or None):
            write_parquet_atomic(compute(i), paths[i])
        return pd.concat([pd.read_parquet(paths[i]) for i in wanted], ignore_index=True)

    def merge_from(self, others: list[str | Path]) -> int:
        """Copy the finished chunks of other cache roots (e.g. shards run on other machines) into this one.

        Chunks are content-addressed, so a merged cache holds exactly what one unsharded run would.
        Returns the number of files copied.
        """
        copied = 0
        for other in map(Path, others):
            for src in other.glob("*/chunk-*.parquet"):
                dst = self.root / src.parent.name / src.name
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dst.with_name(f".tmp-{dst.name}")
                    shutil.copyfile(src, tmp)
                    os.replace(tmp, dst)
                    copied += 1
                meta = src.parent / "meta.json"
                if meta.exists() and not (dst.parent / "meta.json").exists():
                    shutil.copyfile(meta, dst.parent / "meta.json")
        return copied

    def table(self, name: str, params: dict, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """A single-chunk table: computed once, then read back."""
        return self.chunked(name, params, 1, lambda _: compute())

    @contextmanager
    def model_dir(self, name: str, params: dict):
        """Yield (final_path, work_path or None). Write a model into work_path; it appears atomically.

        If the model already exists, work_path is None and nothing needs doing.
        """
        final = self.folder(name, params)
        if (final / "config.json").exists():
            yield final, None
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
        try:
            yield final, work
            write_json_atomic({"name": name, "params": params}, work / "meta.json")
            if final.exists():  # a half-written folder from an older layout; replace it
                shutil.rmtree(final)
            os.replace(work, final)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
