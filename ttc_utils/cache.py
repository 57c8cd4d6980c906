"""The artifact cache: Parquet tables and model folders keyed by a hash of everything that produced them.

Layout: `<root>/<name>-<key>/` holds `chunk-00000.parquet`, ... each with its checksum
`chunk-00000.parquet.sha256` (`sha256sum -c` format), and `meta.json` (the parameters hashed into the key).
Every file is written to a temporary file and renamed into place, and a chunk's checksum is in place
before the chunk itself, so a killed run leaves only whole, checkable chunks behind and a rerun resumes
from the first missing one. A chunk whose bytes no longer match its checksum is reported and recomputed.

A model folder (`model_dir`) carries a manifest in its `meta.json`, `{"files": {relative_path: sha256},
"sizes": {relative_path: bytes}}`, written last; a reused folder is verified against it and rebuilt when
a file is missing, truncated or changed.

    cache = Cache("data/cache/default")
    table = cache.chunked("samples", params, num_chunks, compute_chunk)  # compute_chunk(i) -> DataFrame
    with cache.model_dir("policy-d48l2", params) as (final, work):
        if work is not None:
            model.save_pretrained(work)  # appears at `final` when the block ends

Shards run on other machines merge into one cache from the command line (see `Cache.merge_from`):

    python -m ttc_utils.cache merge data/cache/math500 shard-0/cache/math500 shard-1/cache/math500 ...
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pandas as pd

from .checks import fail
from .workers import run_jobs

META = "meta.json"


class MissingArtifact(RuntimeError):
    """Raised inside `cached_only()` where a stage would compute something the cache does not hold."""


_CACHED_ONLY = [False]


@contextmanager
def cached_only():
    """Within this block the cache computes nothing: a stage whose artifact is missing raises `MissingArtifact` naming
    it and its folder. Benchmarks read what `make figures` cached this way: they measure, never build."""
    before, _CACHED_ONLY[0] = _CACHED_ONLY[0], True
    try:
        yield
    finally:
        _CACHED_ONLY[0] = before


def _refuse(what: str, folder: Path) -> None:
    if _CACHED_ONLY[0]:
        raise MissingArtifact(f"{what} is not in the cache ({folder}); run the notebook that makes it first")


class CacheCorruptionWarning(UserWarning):
    """A cached artifact failed its checksum (or could not be read) and is being recomputed."""


def content_key(params: dict) -> str:
    """A short stable hash of JSON-serialisable parameters (key order does not matter)."""
    blob = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in blocks (weight files can be large)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_atomic(path: Path, write: Callable[[str], None], suffix: str) -> None:
    """Call `write(tmp)` on a temporary file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_parquet(source) -> pd.DataFrame:
    """`pd.read_parquet` on one thread: after a threaded read, pyarrow 26 aborted the interpreter at exit
    ("terminate called without an active exception") in 5 of 130 runs of a script that read six small tables,
    and in none of 100 with `use_threads=False`; an exit code of 134 would fail a finished `make figures`."""
    return pd.read_parquet(source, use_threads=False)


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write `df` next to `path` and rename it into place: readers never see half a file."""
    _write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False), ".parquet")


def write_json_atomic(obj, path: Path) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=str)
    _write_atomic(path, write, ".json")


def _write_bytes_atomic(data: bytes, path: Path) -> None:
    _write_atomic(path, lambda tmp: Path(tmp).write_bytes(data), path.suffix)


# --- chunks and their checksums -------------------------------------------------------------------


def checksum_path(path: Path) -> Path:
    """Where the checksum of a cached chunk lives: next to it, with `.sha256` appended."""
    return path.with_name(path.name + ".sha256")


def _read_checksum(path: Path) -> str | None:
    try:
        return checksum_path(path).read_text().split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def _install_chunk(data: bytes, path: Path) -> None:
    """Put `data` at `path` with its checksum: the checksum first, so a chunk in place is always checkable."""
    digest = hashlib.sha256(data).hexdigest()
    _write_bytes_atomic(f"{digest}  {path.name}\n".encode(), checksum_path(path))
    _write_bytes_atomic(data, path)


def _write_chunk(df: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    _install_chunk(buf.getvalue(), path)


def _chunk_bytes(path: Path) -> tuple[bytes | None, str | None]:
    """(bytes, None) for a chunk whose checksum matches, else (None, why); reads and hashes the file once."""
    expected = _read_checksum(path)
    if expected is None:
        return None, "no checksum file"
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"unreadable: {e}"
    if hashlib.sha256(data).hexdigest() != expected:
        return None, "checksum mismatch"
    return data, None


def _read_chunk(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    data, problem = _chunk_bytes(path)
    if problem is not None:
        return None, problem
    try:
        return read_parquet(io.BytesIO(data)), None
    except (ValueError, OSError) as e:  # hashes right but is not Parquet (pyarrow's errors derive from these)
        return None, f"unreadable: {type(e).__name__}: {e}"


def _compute_chunk(compute: Callable[[int], pd.DataFrame], i: int, path: Path) -> None:
    _write_chunk(compute(i), path)


def _is_present(path: Path) -> bool:
    """Cheap presence test; the checksum itself is verified when the chunk is read (hashing once)."""
    return path.exists() and checksum_path(path).exists()


# --- model folders and their manifests ------------------------------------------------------------


def _read_meta(folder: Path) -> tuple[dict | None, str | None]:
    """(a folder's meta.json or None when it has none, None) or (None, why it cannot be parsed)."""
    try:
        meta = json.loads((folder / META).read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{folder / META} is unreadable ({e})"
    if not isinstance(meta, dict):
        return None, f"{folder / META} is not a JSON object"
    return meta, None


def _manifest_files(folder: Path) -> list[str]:
    """Every file of a model folder as a relative POSIX path, meta.json itself excepted."""
    files = (p for p in folder.rglob("*") if p.is_file())
    return sorted(rel for rel in (p.relative_to(folder).as_posix() for p in files) if rel != META)


def _write_manifest(folder: Path, meta: dict) -> None:
    """Hash every file of `folder` and write meta.json (`meta` plus the manifest) last, atomically."""
    rels = _manifest_files(folder)
    files = {rel: file_sha256(folder / rel) for rel in rels}
    sizes = {rel: (folder / rel).stat().st_size for rel in rels}
    write_json_atomic({**meta, "files": files, "sizes": sizes}, folder / META)


def verify_model_dir(path: str | Path) -> list[str]:
    """The problems of a cached model folder (each naming a file's path); empty when it is fine.

    Each manifest file is checked by size first, then by sha256. A folder without a manifest (written
    before manifests existed) can only be checked for its config.json.
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        return [f"{folder / 'config.json'} is missing"]
    meta, problem = _read_meta(folder)
    if problem is not None:
        return [problem]
    if meta is None or "files" not in meta:
        return []
    sizes = meta.get("sizes", {})
    problems = []
    for rel, digest in sorted(meta["files"].items()):
        f = folder / rel
        if not f.is_file():
            problems.append(f"{f} is missing")
        elif rel in sizes and f.stat().st_size != sizes[rel]:
            problems.append(f"{f} has {f.stat().st_size} bytes, expected {sizes[rel]} (truncated or replaced)")
        elif file_sha256(f) != digest:
            problems.append(f"{f} does not match its checksum (contents changed)")
    return problems


def model_manifest(path: str | Path) -> dict[str, str] | None:
    """{relative path: sha256} of a cached model folder, or None without a manifest.

    Also None when a recorded file is missing or has changed size, so a caller may use the hashes in
    place of rereading the files. Contents are not rehashed here: `verify_model_dir` does that.
    """
    folder = Path(path)
    meta, _ = _read_meta(folder)
    if meta is None or not isinstance(meta.get("files"), dict) or not isinstance(meta.get("sizes"), dict):
        return None
    sizes = meta["sizes"]
    for rel in meta["files"]:
        f = folder / rel
        if rel not in sizes or not f.is_file() or f.stat().st_size != sizes[rel]:
            return None
    return dict(meta["files"])


def _replace_dir(work: Path, final: Path) -> None:
    """Rename `work` to `final`; an old `final` is first renamed aside, so no reader sees a half folder."""
    if not final.exists():
        os.replace(work, final)
        return
    trash = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-old-{final.name}-"))
    os.replace(final, trash)  # renaming a folder onto an empty folder replaces it
    os.replace(work, final)
    shutil.rmtree(trash, ignore_errors=True)


class Cache:
    """Content-addressed artifacts under one root folder (one per profile). With `workers` > 1, the missing chunks of
    a `chunked` table are computed in that many worker processes (`workers.run_jobs`), each writing its own chunks."""

    def __init__(self, root: str | Path, workers: int = 1):
        self.root, self.workers = Path(root), workers

    def folder(self, name: str, params: dict) -> Path:
        return self.root / f"{name}-{content_key(params)}"

    @staticmethod
    def _chunk_paths(folder: Path, num_chunks: int) -> list[Path]:
        return [folder / f"chunk-{i:05d}.parquet" for i in range(num_chunks)]

    def missing(self, name: str, params: dict, num_chunks: int) -> list[int]:
        """The chunks of `chunked(name, params, num_chunks, ...)` not on disk (their checksums are read later)."""
        return [i for i, path in enumerate(self._chunk_paths(self.folder(name, params), num_chunks))
                if not _is_present(path)]

    def chunked(self, name: str, params: dict, num_chunks: int, compute: Callable[[int], pd.DataFrame],
                desc: str | None = None, only: list[int] | None = None, progress: bool = True) -> pd.DataFrame:
        """The concatenation of `compute(i)` for i < num_chunks, computing only the chunks not on disk, with a
        progress bar (`desc`, else `name`) over those unless `progress` is False.

        `params` must name everything that changes the result (model, parameters, seed, chunking).
        With `only`, just those chunks are computed and returned (one shard of a sharded job). With the cache's
        `workers` > 1 and more than one chunk to compute, the workers compute them (`compute` must be pure).
        A chunk without its checksum file is computed again; one whose checksum does not match is
        reported (CacheCorruptionWarning naming its path) and computed again.
        """
        if num_chunks < 1:
            fail("num_chunks", num_chunks, "an int >= 1")
        folder = self.folder(name, params)
        paths = self._chunk_paths(folder, num_chunks)
        wanted = range(num_chunks) if only is None else sorted(only)
        missing = set(self.missing(name, params, num_chunks))
        todo = [i for i in wanted if i in missing]
        if todo:
            _refuse(f"{name!r} ({len(todo)} of {num_chunks} chunks)", folder)
        if todo or not (folder / META).exists():  # a warm read writes nothing
            write_json_atomic({"name": name, "params": params, "num_chunks": num_chunks}, folder / META)
        # in the workers when there are more than one (run_jobs computes a lone chunk here)
        run_jobs([partial(_compute_chunk, compute, i, paths[i]) for i in todo], self.workers, desc or name, progress)
        return pd.concat([self._load_chunk(paths[i], i, compute) for i in wanted], ignore_index=True)

    @staticmethod
    def _load_chunk(path: Path, i: int, compute: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
        """Read a chunk; if it fails its checksum, say so and compute it again."""
        df, problem = _read_chunk(path)
        if problem is None:
            return df
        warnings.warn(f"cached chunk {path} is corrupt ({problem}); recomputing", CacheCorruptionWarning,
                      stacklevel=2)
        _write_chunk(compute(i), path)
        df, problem = _read_chunk(path)
        if problem is not None:
            raise OSError(f"cached chunk {path} is still unreadable after recomputing it ({problem})")
        return df

    def merge_from(self, others: list[str | Path]) -> int:
        """Copy the finished chunks of other cache roots (e.g. shards run on other machines) into this one.

        Chunks are content-addressed, so a merged cache holds exactly what one unsharded run would.
        Only chunks whose checksum matches are copied, each with its checksum file; a chunk already here
        with the same bytes is left alone. Returns the number of chunks copied.
        """
        copied = 0
        for other in map(Path, others):
            for src in sorted(other.glob("*/chunk-*.parquet")):
                dst = self.root / src.parent.name / src.name
                if self._merge_chunk(src, dst):
                    copied += 1
                meta = src.parent / META
                if meta.exists() and not (dst.parent / META).exists():
                    _write_bytes_atomic(meta.read_bytes(), dst.parent / META)
        return copied

    @staticmethod
    def _merge_chunk(src: Path, dst: Path) -> bool:
        data, problem = _chunk_bytes(src)
        if problem is not None:
            warnings.warn(f"not merging cached chunk {src}: {problem}", CacheCorruptionWarning, stacklevel=2)
            return False
        digest = hashlib.sha256(data).hexdigest()
        if dst.exists() and _read_checksum(dst) == digest and file_sha256(dst) == digest:
            return False  # already here, intact
        _install_chunk(data, dst)  # the bytes that were verified, not a second read of `src`
        return True

    def table(self, name: str, params: dict, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """A single-chunk table: computed once, then read back."""
        return self.chunked(name, params, 1, lambda _: compute())

    @staticmethod
    def verify_model_dir(path: str | Path) -> list[str]:
        """The problems of a cached model folder, each naming a file's path; empty when it is fine."""
        return verify_model_dir(path)

    @staticmethod
    def model_manifest(path: str | Path) -> dict[str, str] | None:
        """{relative path: sha256} of a cached model folder whose files still have their recorded sizes."""
        return model_manifest(path)

    @contextmanager
    def model_dir(self, name: str, params: dict):
        """Yield (final_path, work_path or None). Write a model into work_path; it appears atomically.

        If the model already exists and passes `verify_model_dir`, work_path is None and nothing needs
        doing. A folder that fails is reported (CacheCorruptionWarning naming the files) and rebuilt:
        a fresh work_path is yielded and the new folder replaces the old one when the block ends.
        """
        final = self.folder(name, params)
        if self._reusable(final):
            yield final, None
            return
        _refuse(f"the model {name!r}", final)
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
        try:
            yield final, work
            _write_manifest(work, {"name": name, "params": params})
            _replace_dir(work, final)  # also replaces a half-written folder from an older layout
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _reusable(final: Path) -> bool:
        if not (final / "config.json").is_file():
            return False  # never finished (or an older layout): build it, as for a missing folder
        problems = verify_model_dir(final)
        if problems:
            warnings.warn(f"cached model folder {final} is corrupt: {'; '.join(problems)}; rebuilding",
                          CacheCorruptionWarning, stacklevel=2)
            return False
        meta = _read_meta(final)[0] or {}
        if "files" not in meta:
            try:
                _write_manifest(final, meta)  # a folder from before manifests: adopt it once
            except OSError:
                pass  # a read-only cache: use the folder unverified, as before manifests
        return True


def main(argv: list[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m ttc_utils.cache", description="Merge shards' caches into one.")
    sub = ap.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="copy the finished chunks of SRC cache roots into DEST")
    merge.add_argument("dest")
    merge.add_argument("src", nargs="+")
    args = ap.parse_args(argv)
    missing = [s for s in args.src if not Path(s).is_dir()]
    if missing:
        ap.error(f"src={missing[0]!r} is not a cache folder (expected <data_dir>/cache/<profile> of a shard's run)")
    copied = Cache(args.dest).merge_from(args.src)
    print(f"merged {copied} chunks from {len(args.src)} caches into {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
