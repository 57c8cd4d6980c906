"""Model registries: which code loads a `ModelSpec` as a policy or as a verifier.

A policy backend is registered by name and chosen by `spec.backend`; a verifier adapter by name, chosen by
`spec.backend` too, where "auto" picks the suite's own adapters from what the folder holds. A new backend or an
open PRM is one module plus one `register_*` call (in that module or in a test).

    policy = load_policy(ModelSpec(path))                         # transformers unless spec.backend says otherwise
    verifier = load_verifier(ModelSpec(prm_folder, backend="auto"))
    lazy = Lazy(lambda: load_policy(spec))                        # loads on first use: warm reruns never load
"""
from __future__ import annotations

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


def register_verifier(name: str, factory: Callable[..., Verifier]) -> None:
    """`factory(spec, batch_size=..., progress=...)` returns an object with the `verifier.Verifier` method."""
    VERIFIERS[name] = factory


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


class Lazy:
    """A model loaded on first `get()`: cached stages build one, so a warm rerun reads tables and never loads."""

    def __init__(self, load: Callable):
        self._load, self._value = load, None

    def get(self):
        if self._value is None:
            self._value = self._load()
        return self._value
