"""Model registries: which code loads a `ModelSpec` as a policy or as a verifier.

A policy backend is registered by name and chosen by `spec.backend`; a verifier adapter by name, chosen by
`spec.backend` too, where "auto" picks the suite's own adapters from what the folder holds. A new backend or an
open PRM is one module plus one `register_*` call (in that module or in a test).

    policy = load_policy(ModelSpec(path))                         # transformers unless spec.backend says otherwise
    verifier = load_verifier(ModelSpec(prm_folder, backend="auto"))
    lazy = Lazy(lambda: kept_policy(spec))                        # on first use: warm reruns never load

`kept_policy` / `kept_verifier` keep the last `KEEP_LOADED` models of each kind loaded between calls: a notebook runs
dozens of search settings on one policy and one PRM, and reloading them for each cost seconds (a vLLM engine start:
a minute on a GPU) and a progress bar per load. Models are stateless between calls (every call is seeded), so a kept
model returns what a fresh one would (tested).
"""
from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from .open_prm import MathShepherdPRM, QwenPRM
from .policy import Policy
from .token_verifier import TransformersVerifier
from .transformers_policy import TransformersPolicy
from .value_head import HEAD_CONFIG, LikelihoodVerifier
from .verifier import Verifier
from .vllm_policy import VLLMPolicy

POLICY_BACKENDS: dict[str, Callable[..., Policy]] = {"transformers": TransformersPolicy.from_spec,
                                                     "vllm": VLLMPolicy.from_spec}  # imports vLLM only when used
VERIFIERS: dict[str, Callable[..., Verifier]] = {"value_head": LikelihoodVerifier.from_spec,
                                                 "token_classifier": TransformersVerifier.from_spec,
                                                 "math_shepherd": MathShepherdPRM.from_spec,
                                                 "qwen_prm": QwenPRM.from_spec}


def register_policy_backend(name: str, factory: Callable[..., Policy]) -> None:
    """`factory(spec, batch_size=..., progress=...)` returns an object with the `policy.Policy` methods."""
    POLICY_BACKENDS[name] = factory
    release_models()  # a kept model may come from the factory this one replaces


def register_verifier(name: str, factory: Callable[..., Verifier]) -> None:
    """`factory(spec, batch_size=..., progress=...)` returns an object with the `verifier.Verifier` method."""
    VERIFIERS[name] = factory
    release_models()


def load_policy(spec, batch_size: int = 512, progress: bool = True) -> Policy:
    if spec.backend not in POLICY_BACKENDS:
        raise ValueError(f"backend={spec.backend!r} is not allowed for {spec.param}: expected one of "
                         f"{sorted(POLICY_BACKENDS)}")
    return POLICY_BACKENDS[spec.backend](spec, batch_size=batch_size, progress=progress)


def verifier_kind(spec) -> str:
    """The adapter for a spec: its backend, or for "transformers"/"auto" the suite's own by folder contents."""
    if spec.backend in ("auto", "transformers"):
        return "value_head" if (Path(spec.path) / HEAD_CONFIG).exists() else "token_classifier"
    return spec.backend


def load_verifier(spec, batch_size: int = 512, progress: bool = True) -> Verifier:
    kind = verifier_kind(spec)
    if kind not in VERIFIERS:
        raise ValueError(f"backend={spec.backend!r} is not allowed for {spec.param}: expected one of "
                         f"{sorted(VERIFIERS)} or 'auto'")
    return VERIFIERS[kind](spec, batch_size=batch_size, progress=progress)


KEEP_LOADED = 2  # models of each kind (policy, verifier) kept loaded: the policy and PRM, or a PRM and its ablation
_KEPT: dict[str, OrderedDict] = {"policy": OrderedDict(), "verifier": OrderedDict()}


def _kept(kind: str, spec, batch_size: int, progress: bool, load: Callable):
    kept = _KEPT[kind]
    key = (spec, spec.key(), batch_size, progress)  # key(): the folder's contents, so a rewritten folder reloads
    if key in kept:
        kept.move_to_end(key)
        return kept[key]
    while len(kept) >= KEEP_LOADED:
        kept.popitem(last=False)
        gc.collect()  # free the dropped model's memory (a vLLM engine's device memory) before the next one loads
    kept[key] = load(spec, batch_size=batch_size, progress=progress)
    return kept[key]


def kept_policy(spec, batch_size: int = 512, progress: bool = True) -> Policy:
    """`load_policy`, reusing a model already loaded with the same arguments."""
    return _kept("policy", spec, batch_size, progress, load_policy)


def kept_verifier(spec, batch_size: int = 512, progress: bool = True) -> Verifier:
    """`load_verifier`, reusing a model already loaded with the same arguments."""
    return _kept("verifier", spec, batch_size, progress, load_verifier)


def release_models() -> None:
    """Drop every kept model (e.g. before loading something large outside the registry)."""
    for kept in _KEPT.values():
        kept.clear()
    gc.collect()


class Lazy:
    """A model loaded on first `get()`: cached stages build one, so a warm rerun reads tables and never loads."""

    def __init__(self, load: Callable):
        self._load, self._value = load, None

    def get(self):
        if self._value is None:
            self._value = self._load()
        return self._value
