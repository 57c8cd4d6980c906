"""The growing KV cache gives the very samples the library's `DynamicCache` gives, in both samplers."""
import pytest
import torch
from transformers import DynamicCache

import ttc_utils.kv_cache as kv_cache
from ttc_utils.kv_cache import GrowingLayer, growing_cache, select_rows, stack_left_padded, stackable
from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SamplingParams
from ttc_utils.registry import load_policy

PROMPTS = ["Q:\n1+2\n", "Q:\n4*3-7+2\n", "Q:\n9\n", "Q:\n1+2\n"]


@pytest.fixture(scope="module")
def policy(tiny_policy_dir):
    return load_policy(ModelSpec(str(tiny_policy_dir)), batch_size=6, progress=False)


def test_a_layer_returns_what_it_was_given_across_buffer_growth_and_row_selection(monkeypatch):
    monkeypatch.setattr(kv_cache, "GROW_BY", 3)  # every few tokens a new buffer
    layer, keys, values = GrowingLayer(), [], []
    for t in range(11):
        k, v = torch.randn(4, 2, 1 if t else 5, 8), torch.randn(4, 2, 1 if t else 5, 8)
        keys.append(k)
        values.append(v)
        got_k, got_v = layer.update(k, v)
        assert torch.equal(got_k, torch.cat(keys, dim=-2)) and torch.equal(got_v, torch.cat(values, dim=-2))
    assert layer.get_seq_length() == 15
    layer.batch_select_indices(torch.tensor([3, 1]))
    k = torch.randn(2, 2, 1, 8)
    got_k, _ = layer.update(k, k)
    assert torch.equal(got_k, torch.cat([torch.cat(keys, dim=-2)[[3, 1]], k], dim=-2))


@pytest.mark.parametrize("max_new_tokens", [40, 5])  # past GROW_BY with the prompt: regrows; within: room to spare
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("sampler", ["sample", "sample_shared"])
def test_samples_are_identical_to_the_library_cache(policy, monkeypatch, sampler, temperature, max_new_tokens):
    params = SamplingParams(n=5, temperature=temperature, max_new_tokens=max_new_tokens)
    monkeypatch.setattr(kv_cache, "GROW_BY", 7)
    ours = getattr(policy, sampler)(PROMPTS, params, seed=3)
    monkeypatch.setattr(policy, "make_cache", lambda config: DynamicCache(config=config))  # the library's, as before
    library = getattr(policy, sampler)(PROMPTS, params, seed=3)
    assert ours.equals(library)


def test_the_samplers_use_the_growing_cache(policy, monkeypatch):
    made = []

    def spy(config):
        made.append(growing_cache(config))
        return made[-1]
    monkeypatch.setattr(policy, "make_cache", spy)
    policy.sample(PROMPTS[:1], SamplingParams(n=1, max_new_tokens=4), seed=0)
    policy.sample_shared(PROMPTS[:1], SamplingParams(n=2, max_new_tokens=4), seed=0)
    assert len(made) == 2 and all(isinstance(layer, GrowingLayer) for c in made for layer in c.layers)
    # the shared-prefill loop writes at most 4 tokens after its prompt: its buffers hold that much room, no more
    prompt_tokens = len(policy.tokenizer(PROMPTS[0]).input_ids)
    assert all(layer.room == 4 and layer._k.shape[-2] == prompt_tokens + 4 for layer in made[1].layers)


def test_models_with_sliding_window_layers_keep_the_library_cache():
    from transformers import MistralConfig
    config = MistralConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=2, sliding_window=8, vocab_size=32)
    assert not any(isinstance(layer, GrowingLayer) for layer in growing_cache(config).layers)


def test_stacked_caches_put_each_row_right_aligned_with_zeros_on_its_left():
    from transformers import LlamaConfig
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, vocab_size=32)
    parts, rows = [growing_cache(config), growing_cache(config)], [[2, 0], [1]]
    for part, idx, width in zip(parts, rows, (3, 5)):
        for layer in range(2):
            k = torch.randn(len(idx), 2, width, 8)
            part.update(k, -k, layer)
    cache = stack_left_padded(growing_cache(config), parts, rows, 3, 6)
    for layer in range(2):
        keys, values = cache.layers[layer].keys, cache.layers[layer].values
        assert keys.shape == (3, 2, 6, 8) and torch.equal(values, -keys)
        for part, idx, width in zip(parts, rows, (3, 5)):
            for j, row in enumerate(idx):
                assert torch.equal(keys[row, :, 6 - width:], part.layers[layer].keys[j])
                assert not keys[row, :, :6 - width].any()


def test_only_plain_full_attention_caches_are_stackable():
    from transformers import LlamaConfig, MistralConfig
    llama = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=2, vocab_size=32)
    mistral = MistralConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                            num_key_value_heads=2, sliding_window=8, vocab_size=32)
    assert stackable(growing_cache(llama)) and stackable(DynamicCache(config=llama))
    assert not stackable(growing_cache(mistral)) and not stackable(DynamicCache())


@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_selected_rows_are_a_new_cache_and_the_old_one_stays(kind):
    """Several suffix passes read on from one prefill: each gets its own rows, the prefill's cache is left as it was
    (a sliding-window cache, which cannot be stacked, is copied and then selected)."""
    from transformers import LlamaConfig, MistralConfig
    shape = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2, vocab_size=32)
    config = LlamaConfig(**shape) if kind == "llama" else MistralConfig(sliding_window=8, **shape)
    cache = DynamicCache(config=config)
    keys = [torch.randn(3, 2, 5, 8) for _ in range(2)]
    for layer, k in enumerate(keys):
        cache.update(k, -k, layer)
    picked = select_rows(cache, torch.tensor([2, 0, 2]))
    for layer, k in enumerate(keys):
        assert torch.equal(picked.layers[layer].keys, k[[2, 0, 2]])
        assert torch.equal(picked.layers[layer].values, -k[[2, 0, 2]])
        assert torch.equal(cache.layers[layer].keys, k) and torch.equal(cache.layers[layer].values, -k)
