"""The sampler: determinism under a seed, agreement with the library's reference path, bookkeeping."""
import pandas as pd
import pytest

from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SamplingParams, derive_seed
from ttc_utils.registry import load_policy
from ttc_utils.transformers_policy import TransformersPolicy

PROMPTS = ["Q:1+2\n", "Q:45*3-7+12\n", "Q:9\n"]


@pytest.fixture(scope="module")
def policy(tiny_policy_dir):
    policy = load_policy(ModelSpec(str(tiny_policy_dir)), batch_size=4, progress=False)
    assert isinstance(policy, TransformersPolicy)
    return policy


def test_same_seed_same_samples_other_seed_other_samples(policy):
    params = SamplingParams(n=5, temperature=1.0, max_new_tokens=12)
    a = policy.sample(PROMPTS, params, seed=7)
    b = policy.sample(PROMPTS, params, seed=7)
    c = policy.sample(PROMPTS, params, seed=8)
    assert a.equals(b)
    assert not a["text"].equals(c["text"])
    assert len(a) == len(PROMPTS) * 5
    assert sorted(set(zip(a.prompt_index, a.sample_index))) == [(p, s) for p in range(3) for s in range(5)]


def test_batched_greedy_matches_unbatched_generate(policy):
    """The batched, left-padded path agrees with the plain library call on one unpadded prompt."""
    out = policy.sample(PROMPTS, SamplingParams(n=1, temperature=0.0, max_new_tokens=16), seed=0)
    tok, model = policy.tokenizer, policy.model
    for i, prompt in enumerate(PROMPTS):
        ids = tok(prompt, return_tensors="pt").input_ids
        ref = model.generate(ids, do_sample=False, max_new_tokens=16, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)[0, ids.shape[1]:]
        ref_list = ref.tolist()
        if tok.eos_token_id in ref_list:
            ref_list = ref_list[:ref_list.index(tok.eos_token_id) + 1]
        assert out.text[i] == tok.decode(ref_list, skip_special_tokens=True)
        assert out.num_tokens[i] == len(ref_list)


def test_token_counts_and_finish_reasons(policy):
    out = policy.sample(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=10), seed=1)
    assert out.num_tokens.between(1, 10).all()
    assert set(out.finish_reason) <= {"stop", "length"}
    assert (out[out.finish_reason == "length"].num_tokens == 10).all()
    stepped = policy.sample(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=10, stop=("\n",)), seed=1)
    for r in stepped.itertuples():
        if r.finish_reason == "stop":
            assert r.text.endswith("\n") or r.num_tokens < 10
        assert r.text.count("\n") <= 1
        assert "\n" not in r.text[:-1]


def test_derive_seed_is_stable():
    assert derive_seed(0, "chunk", 1) == derive_seed(0, "chunk", 1)
    assert derive_seed(0, "chunk", 1) != derive_seed(0, "chunk", 2)
    assert 0 <= derive_seed("x") < 2**63


def test_the_stop_string_rule_keeps_the_stop_string_in_the_text(policy):
    """The documented rule (policy.py): a completion that ended on a stop string ends WITH it, finish "stop";
    eos is never in the text; a cut at max_new_tokens is "length". Both samplers follow it."""
    params = SamplingParams(n=8, temperature=1.0, max_new_tokens=12, stop=("\n",))
    for out in (policy.sample(PROMPTS, params, seed=2), policy.sample_shared(PROMPTS, params, seed=2)):
        stopped = out[out.text.str.endswith("\n")]
        assert len(stopped) > 0 and (stopped.finish_reason == "stop").all()
        assert not out.text.str.contains("<eos>").any()
        cut = out[out.finish_reason == "length"]
        assert (cut.num_tokens == 12).all() and not cut.text.str.endswith("\n").any()


@pytest.mark.parametrize("kwargs,name", [({"n": 0}, "n"), ({"temperature": -1.0}, "temperature"),
                                         ({"temperature": float("inf")}, "temperature"),
                                         ({"top_p": 0.0}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens")])
def test_bad_sampling_params_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SamplingParams(**kwargs)


def test_shared_prefill_sampler_matches_generate_greedy(policy):
    """The hand-written KV-cache loop (one prefill per distinct prompt) against the library path."""
    prompts = PROMPTS + PROMPTS[:2]  # duplicates share a prefill
    for params in (SamplingParams(n=2, temperature=0.0, max_new_tokens=16),
                   SamplingParams(n=1, temperature=0.0, max_new_tokens=12, stop=("\n",))):
        ref = policy.sample(prompts, params, seed=0)
        got = policy.sample_shared(prompts, params, seed=0)
        pd.testing.assert_frame_equal(ref, got)


def test_shared_prefill_sampler_is_seeded_and_samples(policy):
    params = SamplingParams(n=6, temperature=1.0, max_new_tokens=10, stop=("\n",))
    a = policy.sample_shared(PROMPTS, params, seed=3)
    assert a.equals(policy.sample_shared(PROMPTS, params, seed=3))
    assert not a.text.equals(policy.sample_shared(PROMPTS, params, seed=4).text)
    assert a.groupby("prompt_index").text.nunique().min() > 1  # copies of one prefill are sampled independently
    assert sorted(zip(a.prompt_index, a.sample_index)) == [(p, s) for p in range(3) for s in range(6)]
    assert a.num_tokens.between(1, 10).all()


def test_top_p_keeps_the_smallest_nucleus():
    import torch

    from ttc_utils.transformers_policy import _top_p
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert torch.allclose(_top_p(probs, 0.7), torch.tensor([[0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0]]))
    assert torch.allclose(_top_p(probs, 1.0), probs)


def test_retiring_finished_rows_changes_no_sample(policy, monkeypatch):
    """The decode loop drops finished rows from its cache; every row's tokens are those of the loop that keeps
    them all (random draws are made for the whole batch)."""
    import ttc_utils.transformers_policy as tp
    params = SamplingParams(n=8, temperature=1.0, max_new_tokens=14, stop=("\n",))
    monkeypatch.setattr(tp, "RETIRE_SHARE", 0.0)  # never retire
    ref = policy.sample_shared(PROMPTS, params, seed=5)
    monkeypatch.setattr(tp, "RETIRE_SHARE", 1.0)  # retire at every step
    got = policy.sample_shared(PROMPTS, params, seed=5)
    assert ref.num_tokens.nunique() > 1  # rows finish at different steps, so some were retired
    pd.testing.assert_frame_equal(ref, got)


@pytest.fixture(scope="module")
def sharp_policy(tmp_path_factory):
    """A tiny policy initialised with large weights: logits far from uniform and attention that depends on every
    cached key, so a row's samples show what its cache holds (small initial weights give nearly uniform logits, which
    hide most mistakes)."""
    import torch
    from transformers import LlamaForCausalLM

    from ttc_utils.models import ModelSize, llama_config
    from ttc_utils.tokenizer import build_tokenizer
    tok, path = build_tokenizer(), tmp_path_factory.mktemp("sharp_policy")
    config = llama_config(ModelSize(16, 2, 2), len(tok), 160, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    config.initializer_range = 1.0
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return load_policy(ModelSpec(str(path)), batch_size=64, progress=False)


LONG_PROMPTS = PROMPTS + ["Q:1+2+3+4+5+6+7+8+9*2-1\n", "Q:7\n", "Q:3*3\n"]


def test_a_prefill_in_length_groups_gives_the_logits_and_cache_of_one_prefill(sharp_policy, monkeypatch):
    import torch

    import ttc_utils.transformers_policy as tp
    ids = sharp_policy.tokenizer(LONG_PROMPTS).input_ids
    monkeypatch.setattr(tp, "PREFILL_TOKENS", 10**9)
    ref_logits, ref_cache, ref_mask, _ = sharp_policy._prefill(ids)
    monkeypatch.setattr(tp, "PREFILL_TOKENS", 16)
    assert len(tp.padded_groups([len(i) for i in ids], 16)) > 2
    logits, cache, mask, _ = sharp_policy._prefill(ids)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert (ref_logits.argmax(-1) != ref_logits.argmax(-1)[0]).any()  # the rows' logits differ: a mix-up shows
    for ours, one in zip(cache.layers, ref_cache.layers):
        keep = mask.bool()[:, None, :, None].expand_as(one.keys)  # pad positions hold zeros or pad tokens' keys
        torch.testing.assert_close(ours.keys[keep], one.keys[keep], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.values[keep], one.values[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("library_cache", [False, True])
def test_prefilling_in_length_groups_changes_no_sample(sharp_policy, monkeypatch, temperature, library_cache):
    """The shared-prefill loop prefills length-sorted groups apart and stacks their caches, left-padded to the
    longest prompt; every row's tokens are those of one prefill of the whole batch."""
    import transformers

    import ttc_utils.transformers_policy as tp
    params = SamplingParams(n=3, temperature=temperature, max_new_tokens=14)
    if library_cache:
        monkeypatch.setattr(sharp_policy, "make_cache", lambda config: transformers.DynamicCache(config=config))
    monkeypatch.setattr(tp, "PREFILL_TOKENS", 10**9)  # one group
    ref = sharp_policy.sample_shared(LONG_PROMPTS, params, seed=6)
    assert ref.text.nunique() >= len(LONG_PROMPTS) - 1  # the prompts' samples differ: a mix-up shows
    monkeypatch.setattr(tp, "PREFILL_TOKENS", 16)  # several groups
    got = sharp_policy.sample_shared(LONG_PROMPTS, params, seed=6)
    pd.testing.assert_frame_equal(ref, got)


def test_a_kept_policy_loads_once_samples_as_a_fresh_one_and_makes_way(tiny_policy_dir):
    from ttc_utils.registry import KEEP_LOADED, kept_policy, release_models
    spec = ModelSpec(str(tiny_policy_dir))
    release_models()
    kept = kept_policy(spec, batch_size=4, progress=False)
    assert kept_policy(spec, batch_size=4, progress=False) is kept
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=10)
    fresh = load_policy(spec, batch_size=4, progress=False)
    assert kept.sample(PROMPTS, params, seed=2).equals(fresh.sample(PROMPTS, params, seed=2))
    for batch in range(1, KEEP_LOADED + 1):  # as many other models as are kept: the first one is dropped
        kept_policy(spec, batch_size=batch, progress=False)
    assert kept_policy(spec, batch_size=4, progress=False) is not kept
    release_models()
