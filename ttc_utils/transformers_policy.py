"""The transformers policy backend: any causal LM folder or hub id, batched `generate` on CPU or GPU, and a
shared-prefill KV-cache sampler for step-level search and Monte Carlo rollouts.

    policy = TransformersPolicy.from_spec(ModelSpec("data/cache/default/policy-d64l3-…"))
    out = policy.sample(["Q:\n1+2\n"], SamplingParams(n=4), seed=0)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .batching import left_pad, length_batches, padded_groups
from .kv_cache import growing_cache, reserve_room, stack_left_padded, stackable
from .models import cache_kwargs, count_params, load_causal_lm, output_cache
from .policy import SAMPLE_COLUMNS, SamplingParams, derive_seed

# The shared-prefill decode loop drops finished rows from its KV cache once no more than this share of them is still
# generating: a batch then costs the tokens its rows write, not its longest row's length times its size (revision
# chains: 400 prompts, 38 tokens on average, 77 at most).
RETIRE_SHARE = 0.875
# The shared-prefill loop prefills its prompts in length-sorted groups of at most this many tokens with padding, then
# stacks their caches into one batch: revision chains' prompts run from 56 to 412 tokens (mean 190), and padded to the
# longest they cost 2.1x the tokens and 3.4x the attention (400 prompts: 2.3-2.6 s against 4.8-5.1 s, the same samples).
PREFILL_TOKENS = 8192


class TransformersPolicy:
    """A causal LM sampled with transformers `generate`, many sequences per call.

    Prompts are expanded n times, sorted by length (less padding) and cut into batches of
    `batch_size` sequences; each batch draws from its own generator state derived from `seed`,
    so results depend only on (prompts, params, seed, batch_size).
    """

    # The KV cache each decode loop starts with, made from the model's config: the growing one (identical samples, less
    # copying); `DynamicCache` is the library's reference, which `bench/sampling.py` and the tests set here to compare.
    make_cache = staticmethod(growing_cache)

    def __init__(self, model, tokenizer, name: str = "policy", batch_size: int = 512, progress: bool = True):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size, self.progress = batch_size, progress
        self.non_embedding_params = count_params(model)

    @classmethod
    def from_spec(cls, spec, batch_size: int = 512, progress: bool = True) -> "TransformersPolicy":
        """Load the model of a `ModelSpec` (folder or hub id at its revision, on its device and dtype)."""
        model, tokenizer = load_causal_lm(spec.path, spec.device, spec.dtype, spec.revision)
        return cls(model, tokenizer, name=spec.name, batch_size=batch_size, progress=progress)

    @torch.inference_mode()
    def sample(self, prompts: list[str], params: SamplingParams, seed: int) -> pd.DataFrame:
        jobs = [(p, s) for p in range(len(prompts)) for s in range(params.n)]
        enc = self.tokenizer(list(prompts)).input_ids
        rows = []
        batches = [[jobs[i] for i in b] for b in length_batches([len(enc[p]) for p, _ in jobs], self.batch_size)]
        for b, batch in enumerate(tqdm(batches, desc=f"sampling {self.name}", disable=not self.progress or None,
                                       leave=False)):
            texts, counts, reasons = self._generate([enc[p] for p, _ in batch], params, derive_seed(seed, b))
            rows += [(p, s, t, c, r, len(enc[p])) for (p, s), t, c, r in zip(batch, texts, counts, reasons)]
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS).sort_values(["prompt_index", "sample_index"],
                                                                      ignore_index=True)

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
        # whole prompts per batch, about batch_size sequences each
        batches = length_batches([len(e) for e in enc], self.batch_size, weights=[len(m) for m in members])
        rows = []
        for b, batch in enumerate(tqdm(batches, desc=f"sampling {self.name}", disable=not self.progress or None,
                                       leave=False)):
            counts = [len(members[u]) for u in batch]
            texts, ntok, reasons = self._decode_loop([enc[u] for u in batch], counts, params, derive_seed(seed, b))
            flat = [j for u in batch for j in members[u]]
            rows += [(p, s, t, c, r, len(enc[slot[prompts[p]]])) for (p, s), t, c, r in zip(flat, texts, ntok, reasons)]
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS).sort_values(["prompt_index", "sample_index"],
                                                                      ignore_index=True)

    def _decode_loop(self, ids: list[list[int]], counts: list[int], params: SamplingParams, seed: int):
        tok, device, model = self.tokenizer, self.model.device, self.model
        logits, cache, mask, pos = self._prefill(ids, room=params.max_new_tokens)
        expand = torch.repeat_interleave(torch.arange(len(ids), device=device), torch.tensor(counts, device=device))
        cache.batch_select_indices(expand)
        logits, mask, last = logits[expand].float(), mask[expand], pos[expand, -1]
        stop_ids = torch.tensor([tok.eos_token_id, *self._single_token_stops(params.stop)], device=device)
        gen = torch.Generator(device=device).manual_seed(seed)
        done = torch.zeros(len(expand), dtype=torch.bool, device=device)
        rows = torch.arange(len(expand), device=device)  # the rows still in the cache (all, until some finish)
        new = []
        for t in range(params.max_new_tokens):
            if params.temperature == 0:
                nxt = torch.full_like(done, tok.pad_token_id, dtype=torch.long)
                nxt[rows] = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / params.temperature, dim=-1)
                if params.top_p < 1:
                    probs = _top_p(probs, params.top_p)
                # one draw per row of the whole batch, retired rows included, so a row's tokens do not depend on
                # when other rows finished
                full = torch.ones(len(done), probs.shape[-1], device=device)
                full[rows] = probs
                nxt = torch.multinomial(full, 1, generator=gen)[:, 0]
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            new.append(nxt)
            done |= torch.isin(nxt, stop_ids)
            if bool(done.all()) or t == params.max_new_tokens - 1:
                break
            live = ~done[rows]
            if int(live.sum()) <= RETIRE_SHARE * len(rows):
                keep = live.nonzero()[:, 0]
                cache.batch_select_indices(keep)
                rows, mask, last = rows[keep], mask[keep], last[keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            last = last + 1
            out = model(input_ids=nxt[rows][:, None], attention_mask=mask, position_ids=last[:, None], use_cache=True,
                        **cache_kwargs(model, cache))
            logits = out.logits[:, -1].float()
        return self._finish(torch.stack(new, 1).cpu().numpy(), params, set(stop_ids.tolist()))

    def _prefill(self, ids: list[list[int]], room: int | None = None):
        """(last-token logits, KV cache, attention mask, position ids) of the left-padded batch `ids`, computed in
        `padded_groups` of `PREFILL_TOKENS` and stacked (`kv_cache.stack_left_padded`) where the cache allows; the
        cache keeps room for `room` more tokens (`kv_cache.GROW_BY` if None)."""
        device, model = self.model.device, self.model
        x, mask = left_pad(ids, self.tokenizer.pad_token_id)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        x, mask, pos = x.to(device), mask.to(device), pos.to(device)
        groups = padded_groups([len(i) for i in ids], PREFILL_TOKENS)
        cache = self.make_cache(model.config)
        if room is not None:
            reserve_room(cache, room)
        if len(groups) == 1 or not stackable(cache):
            out = model(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                        **cache_kwargs(model, cache))
            return out.logits[:, -1], output_cache(out), mask, pos
        width, parts, logits = x.shape[1], [], None
        for rows in groups:
            cols = slice(width - max(len(ids[i]) for i in rows), width)
            out = model(input_ids=x[rows, cols], attention_mask=mask[rows, cols], position_ids=pos[rows, cols],
                        use_cache=True, logits_to_keep=1, **cache_kwargs(model, self.make_cache(model.config)))
            if logits is None:
                logits = out.logits.new_empty(len(ids), out.logits.shape[-1])
            logits[rows] = out.logits[:, -1]
            parts.append(output_cache(out))
        return logits, stack_left_padded(cache, parts, groups, len(ids), width), mask, pos

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
        out = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                  **cache_kwargs(self.model, self.make_cache(self.model.config)), **kwargs)
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


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (nucleus sampling), renormalised."""
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    drop = sorted_p.cumsum(-1) - sorted_p > top_p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, idx, sorted_p) / sorted_p.sum(-1, keepdim=True)
