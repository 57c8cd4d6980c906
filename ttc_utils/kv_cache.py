"""A KV cache that grows in place, for the samplers' decode loops.

transformers' `DynamicCache` concatenates every layer's keys and values with the new token's at each decode step, so
a step copies the whole cache: on the embedded world's models that copy was 60% of `generate`'s time and 36% of the
shared-prefill loop's (torch profiler, d64l3, 64 questions x 16 samples). `GrowingLayer` keeps a buffer with room
for more tokens and hands attention a view of its filled part, so a step writes one token. Attention reads the same
values, so samples are identical to the library cache's (`tests/test_kv_cache.py` checks greedy and sampled outputs
of both samplers against `DynamicCache`).

    out = model.generate(ids, **cache_kwargs(model, growing_cache(model.config)), ...)

`stack_left_padded` makes one batch's cache from the caches of micro-batches prefilled apart (the shared-prefill
sampler's prefill: rows of very different lengths padded to the longest cost twice the tokens and three times the
attention of the rows themselves).
"""
from __future__ import annotations

import copy

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

GROW_BY = 64  # tokens of room added when a buffer is full (a solution of the default world is at most ~80 tokens)


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose `keys` / `values` are views of buffers with room for `GROW_BY` more tokens (or
    `room`, set by `reserve_room`)."""

    room: int | None = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:  # (the library's lazy_initialization differs between releases)
            self.device, self.is_initialized = key_states.device, True
            self._clear()
        new = key_states.shape[-2]
        if self._k is None or self._len + new > self._k.shape[-2]:
            self._reserve(self._len + new + self._room(), key_states, value_states)
        self._k[:, :, self._len:self._len + new] = key_states
        self._v[:, :, self._len:self._len + new] = value_states
        self._len += new
        self.keys, self.values = self._k[:, :, :self._len], self._v[:, :, :self._len]
        return self.keys, self.values

    def _reserve(self, room: int, key_states, value_states):
        """New buffers of `room` tokens holding what is cached so far."""
        b, h, _, _ = key_states.shape
        k = key_states.new_empty(b, h, room, key_states.shape[-1])
        v = value_states.new_empty(b, h, room, value_states.shape[-1])
        if self._len:
            k[:, :, :self._len], v[:, :, :self._len] = self.keys, self.values
        self._k, self._v = k, v
        self.keys, self.values = k[:, :, :self._len], v[:, :, :self._len]

    def _room(self) -> int:
        return GROW_BY if self.room is None else self.room

    def _rebuild(self):
        """Buffers for `keys` / `values` as a library method left them (other rows, fewer tokens)."""
        if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
            self._clear()
            return
        keys, values = self.keys, self.values
        self._len = keys.shape[-2]
        self._k = self._v = None
        self._reserve(self._len + self._room(), keys, values)

    # The library's methods replace `keys` / `values` with new tensors; the buffers follow them.
    def batch_select_indices(self, indices):
        if self._k is None or not self._len:
            super().batch_select_indices(indices)
            return self._rebuild()
        # whole rows of the buffers, room included, in one contiguous copy: the library's select and then `_rebuild`
        # copied each row twice, the second time into a strided slice (13% of a beam search's time, profiled)
        self._k, self._v = self._k.index_select(0, indices), self._v.index_select(0, indices)
        self.keys, self.values = self._k[:, :, :self._len], self._v[:, :, :self._len]

    def batch_repeat_interleave(self, repeats):
        super().batch_repeat_interleave(repeats)
        self._rebuild()

    def reorder_cache(self, beam_idx):
        super().reorder_cache(beam_idx)
        self._rebuild()

    def crop(self, tokens_to_remove):
        super().crop(tokens_to_remove)
        self._rebuild()

    def reset(self):
        super().reset()
        self._clear()

    def _clear(self):
        """No buffers and nothing cached."""
        self._k = self._v = None
        self._len = 0


def growing_cache(config=None) -> Cache:
    """An empty cache for a model with `config`: `GrowingLayer`s where the library would use plain `DynamicLayer`s
    (full attention in every layer), else the library's own cache (sliding-window or hybrid layers), as also under an
    older transformers without layered caches (the vLLM extra pins one): the same samples, at the library's speed."""
    library = DynamicCache(config=config) if config is not None else DynamicCache()
    layers = getattr(library, "layers", None)
    if layers is None:
        return library
    if not layers:  # no config: layers are made as the forward first fills them
        return Cache(layer_class_to_replicate=GrowingLayer)
    if any(type(layer) is not DynamicLayer for layer in layers):
        return library
    return Cache(layers=[GrowingLayer() for _ in layers])


def reserve_room(cache, tokens: int) -> None:
    """Let the growing layers of the empty `cache` keep room for `tokens` more tokens (at most `GROW_BY`) when they
    fill: a decode loop that writes at most `tokens` then never regrows, and copies no unused room when it selects
    rows (search's steps are capped at 17-32 tokens; each selected row copied 64 tokens of room)."""
    for layer in getattr(cache, "layers", None) or []:
        if isinstance(layer, GrowingLayer):
            layer.room = min(tokens, GROW_BY)


def stackable(cache) -> bool:
    """Whether `stack_left_padded` can fill `cache` (an empty one): full-attention layers of the library's plain
    kind or ours. Sliding-window or static layers, and older releases without layered caches, cannot."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) in (DynamicLayer, GrowingLayer) for layer in layers)


def stack_left_padded(cache, parts: list, rows: list[list[int]], total: int, width: int):
    """Fill the empty `cache` with `total` rows of `width` tokens: row `rows[i][j]` is row j of the cache `parts[i]`,
    right-aligned, its left filled with zeros (positions the attention mask hides, as a left-padded batch's pad
    tokens). Returns `cache`; check `stackable(cache)` first."""
    for layer in range(len(cache.layers)):
        k0, v0 = parts[0].layers[layer].keys, parts[0].layers[layer].values
        k = k0.new_zeros(total, k0.shape[1], width, k0.shape[-1])
        v = v0.new_zeros(total, v0.shape[1], width, v0.shape[-1])
        for part, idx in zip(parts, rows):
            pk, pv = part.layers[layer].keys, part.layers[layer].values
            index = torch.tensor(idx, device=k.device)
            k[index, :, width - pk.shape[-2]:] = pk
            v[index, :, width - pv.shape[-2]:] = pv
        cache.update(k, v, layer)
    return cache


def select_rows(cache, index: torch.Tensor):
    """A new cache holding rows `index` of `cache`, which stays as it was (several batches read on from one prefill's
    rows); a cache `stack_left_padded` could not fill is copied whole and then selected."""
    if stackable(cache):
        return DynamicCache([(layer.keys.index_select(0, index), layer.values.index_select(0, index))
                             for layer in cache.layers])
    out = copy.deepcopy(cache)
    out.batch_select_indices(index)
    return out
