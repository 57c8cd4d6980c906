"""The policy interface: sample n completions per prompt, with token counts and finish reasons.

One interface for every backend (DESIGN.md §5). `TransformersPolicy` runs any causal LM folder or hub
id through the transformers `generate` on CPU or GPU, batched over prompts and samples; a vLLM backend
will implement the same `sample` method.

    policy = TransformersPolicy.from_pretrained("data/cache/default/policy-d48l2-…")
    out = policy.sample(["Q:1+2\\n"], SamplingParams(n=4, temperature=1.0), seed=0)
    out[["prompt_index", "sample_index", "text", "num_tokens", "finish_reason"]]
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .models import count_params, load_causal_lm

FINISH_REASONS = ("stop", "length")  # stop: eos or a stop string was produced; length: max_new_tokens hit


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1  # completions per prompt
    temperature: float = 1.0  # 0 means greedy decoding
    top_p: float = 1.0  # nucleus sampling mass
    max_new_tokens: int = 128  # generation cap per completion
    stop: tuple[str, ...] = ()  # stop strings, e.g. ("\n",) to stop at a step boundary

    def __post_init__(self):
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n={self.n!r} is not allowed: expected an int >= 1")
        if not self.temperature >= 0:
            raise ValueError(f"temperature={self.temperature!r} is not allowed: expected a float >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p!r} is not allowed: expected a float in (0, 1]")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens!r} is not allowed: expected an int >= 1")


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts (seed, chunk index, name...), stable across runs and platforms."""
    blob = "/".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big") >> 1


class Policy(Protocol):
    name: str
    non_embedding_params: int

    def sample(self, prompts: list[str], params: SamplingParams, seed: int) -> pd.DataFrame:
        """One row per (prompt_index, sample_index): text, num_tokens, finish_reason."""


class TransformersPolicy:
    """A causal LM sampled with transformers `generate`, many sequences per call.

    Prompts are expanded n times, sorted by length (less padding) and cut into batches of
    `batch_size` sequences; each batch draws from its own generator state derived from `seed`,
    so results depend only on (prompts, params, seed, batch_size).
    """

    def __init__(self, model, tokenizer, name: str = "policy", batch_size: int = 512, progress: bool = True):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size, self.progress = batch_size, progress
        self.non_embedding_params = count_params(model)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", **kw) -> "TransformersPolicy":
        model, tokenizer = load_causal_lm(path, device)
        return cls(model, tokenizer, name=kw.pop("name", str(path).rstrip("/").split("/")[-1]), **kw)

    @torch.inference_mode()
    def sample(self, prompts: list[str], params: SamplingParams, seed: int) -> pd.DataFrame:
        jobs = [(p, s) for p in range(len(prompts)) for s in range(params.n)]
        enc = self.tokenizer(list(prompts)).input_ids
        jobs.sort(key=lambda j: (len(enc[j[0]]), j[0], j[1]))
        rows = []
        batches = [jobs[i:i + self.batch_size] for i in range(0, len(jobs), self.batch_size)]
        for b, batch in enumerate(tqdm(batches, desc=f"sampling {self.name}", disable=not self.progress or None,
                                       leave=False)):
            texts, counts, reasons = self._generate([enc[p] for p, _ in batch], params, derive_seed(seed, b))
            rows += [(p, s, t, c, r) for (p, s), t, c, r in zip(batch, texts, counts, reasons)]
        df = pd.DataFrame(rows, columns=["prompt_index", "sample_index", "text", "num_tokens", "finish_reason"])
        return df.sort_values(["prompt_index", "sample_index"], ignore_index=True)

    @torch.inference_mode()
    def sample_shared(self, prompts: list[str], params: SamplingParams, seed: int) -> pd.DataFrame:
        """As `sample`, but every distinct prompt is prefilled once and its KV cache copied to each of its
        samples before decoding (a hand-written loop over the cache; `generate` prefills every copy).

        Search sends each kept beam M times and short steps, so prefill dominates there: this path is
        `bench/search.py`'s subject and is tested against `generate` (greedy outputs are identical).
        """
        jobs = [(p, s) for p in range(len(prompts)) for s in range(params.n)]
        unique = list(dict.fromkeys(prompts))
        enc = self.tokenizer(unique).input_ids
        slot = {text: u for u, text in enumerate(unique)}
        members: list[list[tuple[int, int]]] = [[] for _ in unique]
        for p, s in jobs:
            members[slot[prompts[p]]].append((p, s))
        order = sorted(range(len(unique)), key=lambda u: (len(enc[u]), u))
        batches, cur, size = [], [], 0
        for u in order:  # whole prompts per batch, about batch_size sequences each
            if cur and size + len(members[u]) > self.batch_size:
                batches.append(cur)
                cur, size = [], 0
            cur.append(u)
            size += len(members[u])
        if cur:
            batches.append(cur)
        rows = []
        for b, batch in enumerate(tqdm(batches, desc=f"sampling {self.name}", disable=not self.progress or None,
                                       leave=False)):
            counts = [len(members[u]) for u in batch]
            texts, ntok, reasons = self._decode_loop([enc[u] for u in batch], counts, params, derive_seed(seed, b))
            flat = [j for u in batch for j in members[u]]
            rows += [(p, s, t, c, r) for (p, s), t, c, r in zip(flat, texts, ntok, reasons)]
        df = pd.DataFrame(rows, columns=["prompt_index", "sample_index", "text", "num_tokens", "finish_reason"])
        return df.sort_values(["prompt_index", "sample_index"], ignore_index=True)

    def _decode_loop(self, ids: list[list[int]], counts: list[int], params: SamplingParams, seed: int):
        tok, device, model = self.tokenizer, self.model.device, self.model
        x, mask = left_pad(ids, tok.pad_token_id)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        x, mask, pos = x.to(device), mask.to(device), pos.to(device)
        out = model(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        expand = torch.repeat_interleave(torch.arange(len(ids), device=device), torch.tensor(counts, device=device))
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        cache.batch_select_indices(expand)
        logits, mask, last = out.logits[expand, -1].float(), mask[expand], pos[expand, -1]
        stop_ids = torch.tensor([tok.eos_token_id, *self._single_token_stops(params.stop)], device=device)
        gen = torch.Generator(device=device).manual_seed(seed)
        done = torch.zeros(len(expand), dtype=torch.bool, device=device)
        new = []
        for t in range(params.max_new_tokens):
            if params.temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / params.temperature, dim=-1)
                if params.top_p < 1:
                    probs = _top_p(probs, params.top_p)
                nxt = torch.multinomial(probs, 1, generator=gen)[:, 0]
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            new.append(nxt)
            done |= torch.isin(nxt, stop_ids)
            if bool(done.all()) or t == params.max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            last = last + 1
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None], cache=cache,
                        use_cache=True)
            logits = out.logits[:, -1].float()
        return self._finish(torch.stack(new, 1).cpu().numpy(), params, set(stop_ids.tolist()))

    def _generate(self, ids: list[list[int]], params: SamplingParams, seed: int):
        tok, device = self.tokenizer, self.model.device
        input_ids, mask = left_pad(ids, tok.pad_token_id)
        width = input_ids.shape[1]
        greedy = params.temperature == 0
        stop_ids = self._single_token_stops(params.stop)
        kwargs = dict(do_sample=not greedy, max_new_tokens=params.max_new_tokens,
                      pad_token_id=tok.pad_token_id, eos_token_id=[tok.eos_token_id, *stop_ids])
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.stop and not stop_ids:  # multi-token stop strings: the library's string matcher
            kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
        torch.manual_seed(seed)
        out = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kwargs)
        new = out[:, width:].cpu().numpy()
        return self._finish(new, params, {tok.eos_token_id, *stop_ids})

    def _single_token_stops(self, stop: tuple[str, ...]) -> list[int]:
        """Token ids of the stop strings if each is exactly one token (then generate stops on them as on
        eos, which is fast and exact); [] otherwise."""
        ids = [self.tokenizer.encode(s, add_special_tokens=False) for s in stop]
        return [i[0] for i in ids] if ids and all(len(i) == 1 for i in ids) else []

    def _finish(self, new: np.ndarray, params: SamplingParams, stop_ids: set[int]):
        """Cut each generated row at its end (eos or a stop), count its tokens, name the reason."""
        tok = self.tokenizer
        pad = tok.pad_token_id
        texts, counts, reasons = [], [], []
        for row in new.tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in stop_ids), None)
            stopped = end is not None
            if end is None:  # no stop token: the row ran to the cap, or hit a multi-token stop string
                end = len(row)
                while end > 0 and row[end - 1] == pad and pad not in stop_ids:
                    end -= 1
                text = tok.decode(row[:end], skip_special_tokens=True)
                stopped = end < len(row) or any(text.endswith(s) for s in params.stop)
            else:
                text = tok.decode(row[:end], skip_special_tokens=True)
            texts.append(text)
            counts.append(end)
            reasons.append("stop" if stopped else "length")
        return texts, counts, reasons


def left_pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every row ending at the last column, as generation needs."""
    width = max(map(len, ids))
    x = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        x[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return x, mask


def right_pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every row starting at column 0: positions then match an unpadded
    forward exactly, which scoring and training a verifier need."""
    width = max(map(len, ids))
    x = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        x[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return x, mask


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (nucleus sampling), renormalised."""
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    drop = sorted_p.cumsum(-1) - sorted_p > top_p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, idx, sorted_p) / sorted_p.sum(-1, keepdim=True)
