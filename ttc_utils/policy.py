"""The policy interface: sample n completions per prompt, with token counts and finish reasons.

One interface for every backend (DESIGN.md §5); backends register in `registry` and are loaded from a
`ModelSpec` with `registry.load_policy(spec)`. Nothing outside a backend knows how it samples.

The stop-string rule, the same for every backend: a completion that ended on a stop string (e.g. the task's
step delimiter) INCLUDES that stop string at its end, and its finish_reason is "stop"; eos is never part of the
text; a completion cut at max_new_tokens has finish_reason "length". (vLLM: `include_stop_str_in_output=True`.)

    policy = load_policy(ModelSpec("data/cache/default/policy-d64l3-…"))
    out = policy.sample(["Q:\n1+2\n"], SamplingParams(n=4, temperature=1.0), seed=0)
    out[["prompt_index", "sample_index", "text", "num_tokens", "finish_reason"]]
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from .checks import check, check_int

FINISH_REASONS = ("stop", "length")  # stop: eos or a stop string was produced; length: max_new_tokens hit
# num_tokens: the completion's tokens (decode); prompt_tokens: the prompt's tokens as the policy read it (prefill)
SAMPLE_COLUMNS = ["prompt_index", "sample_index", "text", "num_tokens", "finish_reason", "prompt_tokens"]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # completions per prompt
    temperature: float = 1.0  # 0 means greedy decoding
    top_p: float = 1.0  # nucleus sampling mass
    max_new_tokens: int = 128  # generation cap per completion
    stop: tuple[str, ...] = ()  # stop strings, e.g. the task's step delimiter to stop at a step boundary

    def __post_init__(self):
        check_int("n", self.n)
        check(self.temperature >= 0 and math.isfinite(self.temperature), "temperature", self.temperature,
              "a finite float >= 0")
        check(0 < self.top_p <= 1, "top_p", self.top_p, "a float in (0, 1]")
        check_int("max_new_tokens", self.max_new_tokens)


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts (seed, chunk index, name...), stable across runs and platforms."""
    blob = "/".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") >> 1


class Policy(Protocol):
    name: str
    non_embedding_params: int

    def sample(self, prompts: list[str], params: SamplingParams, seed: int) -> pd.DataFrame:
        """One row per (prompt_index, sample_index) of SAMPLE_COLUMNS: text, num_tokens, finish_reason."""

    def sample_shared(self, prompts: list[str], params: SamplingParams, seed: int) -> pd.DataFrame:
        """As `sample`, for prompts that repeat or share long prefixes (rollouts, search): a backend may reuse
        their prefill. Its samples follow the same distribution, not the same random stream as `sample`."""
