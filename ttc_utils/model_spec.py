"""Model specs: which model a notebook parameter names, checked up front, and a cache key for its contents.

A `ModelSpec` is a local folder (written by `save_pretrained`) or a hub id 'org/name', plus how it is
loaded (backend, dtype, device). `check()` fails fast with an error naming the notebook parameter;
`key()` is what names the model in every cache key. A folder's key hashes the *contents* of its weight,
config and tokenizer files (two checkpoints of the same shape do not collide; a copy elsewhere gets the
same key); a hub id's key is pinned to a commit.

    spec = ModelSpec(params["policy_path"], dtype="bfloat16", device="cuda", param="policy_path").check()
    key = {"policy": spec.key(), ...}  # e.g. 'policy-d48l2-3f0c…-9a1b2c3d4e5f6a7b'

Hashing a folder costs one read of its files; the digest is remembered in-process while no file's size
or mtime changes, and a folder written by `Cache.model_dir` is not reread at all: its manifest's hashes
are used.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .cache import file_sha256, model_manifest

DTYPES = (None, "float32", "bfloat16", "float16")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
# Besides the weights, the files that change what the model computes or how text is tokenized.
KEYED_FILES = ("config.json", "generation_config.json", "value_head.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
               "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja")
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
COMMIT = re.compile(r"[0-9a-f]{40}")
DEVICE = re.compile(r"(cpu|mps|cuda|xpu)(:\d+)?")
BACKEND = re.compile(r"[a-z][a-z0-9_-]*")

# (resolved folder, ((relative path, size, mtime_ns), ...)) -> digest of those files' contents
_FOLDER_DIGESTS: dict[tuple, str] = {}


@dataclass(frozen=True)
class ModelSpec:
    """A model to load: a folder or hub id, the backend that loads it, and its dtype and device."""
    path: str  # a local folder written by save_pretrained, or a hub id 'org/name'
    backend: str = "transformers"  # registry name of the backend that loads it
    revision: str | None = None  # hub commit or branch; None for a folder
    dtype: str | None = None  # None (the checkpoint's own), "float32", "bfloat16" or "float16"
    device: str = "cpu"  # "cpu", "cuda", "cuda:1", ...
    param: str = field(default="model_path", compare=False)  # the notebook parameter, for error messages
    trust_remote_code: bool = False  # run the model's own code from the hub (an open PRM that needs it); opt-in

    def __post_init__(self):
        if isinstance(self.path, os.PathLike):  # a pathlib.Path is as good as its string
            object.__setattr__(self, "path", os.fspath(self.path))

    @property
    def name(self) -> str:
        """A short display name (progress bars, logs): the folder's or hub repo's last path component."""
        return str(self.path).rstrip("/").split("/")[-1]

    # --- validation ---------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.param}={self.path!r}"

    def _folder(self) -> Path | None:
        """The local folder this spec names, None for a hub id; raises for anything else (cheap checks only)."""
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"{self._where()} is not allowed: expected a model folder or a hub id 'org/name'")
        self._check_options()
        local = Path(os.path.expanduser(self.path))
        if local.is_dir():
            if self.revision is not None:
                raise ValueError(f"{self._where()}: revision={self.revision!r} is not allowed for a local folder "
                                 f"(revision pins a hub commit; leave it None)")
            if not (local / "config.json").is_file():
                raise FileNotFoundError(f"{self._where()}: the folder has no config.json (expected a folder "
                                        f"written by save_pretrained)")
            return local
        if HUB_ID.fullmatch(self.path) is None or self.path.startswith("."):
            raise FileNotFoundError(f"{self._where()}: no such model folder (and not a hub id 'org/name')")
        return None

    def _check_options(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"{self._where()}: dtype={self.dtype!r} is not allowed: expected one of {DTYPES}")
        if not isinstance(self.device, str) or DEVICE.fullmatch(self.device) is None:
            raise ValueError(f"{self._where()}: device={self.device!r} is not allowed: expected 'cpu', 'cuda', "
                             f"'cuda:N', 'mps' or 'xpu'")
        if not isinstance(self.backend, str) or BACKEND.fullmatch(self.backend) is None:
            raise ValueError(f"{self._where()}: backend={self.backend!r} is not allowed: expected a backend "
                             f"name such as 'transformers'")
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision):
            raise ValueError(f"{self._where()}: revision={self.revision!r} is not allowed: expected None, a "
                             f"branch or tag name, or a 40-hex commit")

    def check(self) -> ModelSpec:
        """Raise ValueError / FileNotFoundError naming `param` unless the model can be loaded; returns self.

        A folder must hold a loadable config and tokenizer. A hub id must be in the local hub cache when
        offline (HF_HUB_OFFLINE=1; no network is tried), and its config must be fetchable otherwise.
        """
        folder = self._folder()
        if folder is not None:
            expected = "expected a folder written by save_pretrained, with its tokenizer"
            self._check_loads(folder, "config", "AutoConfig", expected)
            self._check_loads(folder, "tokenizer", "AutoTokenizer", expected)
        elif _offline():
            self._check_hub_cached()
        else:
            expected = "expected a hub id whose config can be downloaded (check the id, revision and network)"
            self._check_loads(self.path, "config", "AutoConfig", expected, revision=self.revision)
        return self

    def _check_loads(self, source, what: str, cls: str, expected: str, **kwargs) -> None:
        import transformers  # lazily: importing it takes seconds

        try:
            getattr(transformers, cls).from_pretrained(source, **kwargs)
        except Exception as e:  # any failure to load (OSError, ValueError, parse errors) is reported alike
            raise ValueError(f"{self._where()}: the {what} cannot be loaded ({_one_line(e)}); {expected}") from e

    def _check_hub_cached(self) -> None:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.path, "config.json", revision=self.revision)
        if not isinstance(found, str):
            at = "" if self.revision is None else f" at revision={self.revision!r}"
            raise FileNotFoundError(f"{self._where()}: not in the local hub cache{at}, and HF_HUB_OFFLINE=1 "
                                    f"forbids downloading it (download it once online, or pass a local folder)")

    # --- the cache key ------------------------------------------------------------------------------

    def key(self) -> str:
        """What names this model in cache keys: contents-based for a folder, commit-pinned for a hub id."""
        folder = self._folder()
        if folder is not None:
            h = hashlib.sha256(folder_digest(folder).encode())
            h.update(self._loading().encode())
            return f"{folder.resolve().name}-{h.hexdigest()[:16]}"
        h = hashlib.sha256(self._loading().encode())
        return f"{self.path}@{self._commit()}-{h.hexdigest()[:16]}"

    def _loading(self) -> str:
        """How the weights are loaded: the same weights under another backend or dtype compute other numbers.

        Only the device type counts: cuda:0 and cuda:1 compute the same numbers.
        """
        return f"\0backend={self.backend}\0dtype={self.dtype}\0device={self.device.split(':')[0]}"

    def _commit(self) -> str:
        if self.revision is not None and COMMIT.fullmatch(self.revision):
            return self.revision
        commit = _cached_commit(self.path, self.revision or "main")
        if commit is None:
            raise ValueError(f"{self._where()}: cannot tell which commit revision {self.revision or 'main'!r} is "
                             f"(not in the local hub cache); pin revision to a 40-hex commit so the cache key "
                             f"is stable")
        return commit


def keyed_files(folder: Path) -> list[str]:
    """The files of a model folder that its key hashes, as sorted relative paths."""
    names = {p.name for p in folder.iterdir() if p.is_file()}
    weights = {n for n in names if n.endswith(WEIGHT_SUFFIXES)}
    return sorted(weights | (names & set(KEYED_FILES)))


def folder_digest(folder: Path) -> str:
    """sha256 over the keyed files' relative paths and contents; memoised by their sizes and mtimes."""
    rels = keyed_files(folder)
    stats = tuple((rel, st.st_size, st.st_mtime_ns) for rel, st in ((r, (folder / r).stat()) for r in rels))
    memo = (str(folder.resolve()), stats)
    if memo not in _FOLDER_DIGESTS:
        # A folder written by Cache.model_dir has its files' hashes in its manifest (None if sizes changed).
        known = model_manifest(folder) or {}
        h = hashlib.sha256()
        for rel in rels:
            h.update(f"{rel}\0{known.get(rel) or file_sha256(folder / rel)}\n".encode())
        _FOLDER_DIGESTS[memo] = h.hexdigest()
    return _FOLDER_DIGESTS[memo]


def _cached_commit(repo_id: str, revision: str) -> str | None:
    """The commit a branch or tag points to in the local hub cache (no network), or None."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    ref = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "refs" / revision
    try:
        commit = ref.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return commit if COMMIT.fullmatch(commit) else None


def _offline() -> bool:
    """Read at call time (huggingface_hub reads it once, at import)."""
    values = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(v.strip().upper() in {"1", "ON", "YES", "TRUE"} for v in values)


def _one_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text[:200]}"
