"""The likelihood verifier: step features from one forward pass, a value head that learns from soft targets,
and scoring that does not depend on the batch."""
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttc_utils import value_head
from ttc_utils.model_spec import ModelSpec
from ttc_utils.registry import load_verifier
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.value_head import (
    LikelihoodVerifier,
    ValueHead,
    fit_value_head,
    save_value_verifier,
    shared_step_features,
    step_features,
)
from ttc_utils.verifier import encode_steps
from ttc_utils.world import make_problem

split = ArithmeticTask().split_steps

P = make_problem(3, [("+", 4), ("*", 2), ("-", 1)], 10)  # steps 7*2-1, 4-1, 3
COMPLETIONS = [P.solution, "7*2-1\n5-1\n4\nA:4\n", "9\nA:9\n", ""]


@pytest.fixture(scope="module")
def lm_tok(tiny_policy_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_policy_dir).eval(), AutoTokenizer.from_pretrained(tiny_policy_dir)


def test_step_features_are_the_models_log_probs_of_each_step(lm_tok):
    lm, tok = lm_tok
    feats, tokens = step_features(lm, tok, [P.prompt] * len(COMPLETIONS), [split(c) for c in COMPLETIONS],
                                  batch_size=3)
    assert [len(f) for f in feats] == [4, 4, 2, 0] and feats[0].shape[1] == lm.config.hidden_size + 5
    for completion, f, n in zip(COMPLETIONS[:3], feats, tokens):
        ids, ends = encode_steps(tok, P.prompt, split(completion))
        assert n == len(ids)
        x = torch.tensor([ids])
        with torch.no_grad():
            out = lm(input_ids=x, output_hidden_states=True)
        logp = torch.log_softmax(out.logits[0], -1)
        prev = len(tok(P.prompt).input_ids) - 1
        mins, sums = [], []
        for j, e in enumerate(ends):
            v = [logp[t - 1, ids[t]].item() for t in range(prev + 1, e + 1)]
            mins.append(min(v)), sums.append(sum(v))
            prev = e
            h = f[j, :lm.config.hidden_size]
            assert np.allclose(h, out.hidden_states[-1][0, e].numpy(), atol=1e-5)  # unpadded == batched
            step_min, step_sum, run_min, run_sum, index = f[j, lm.config.hidden_size:]
            assert step_min == pytest.approx(min(v), abs=1e-4) and step_sum == pytest.approx(sum(v), abs=1e-4)
            assert run_min == pytest.approx(min(mins), abs=1e-4) and run_sum == pytest.approx(sum(sums), abs=1e-3)
            assert index == j


def test_value_head_learns_a_feature_that_separates_the_targets():
    """Targets are a noisy function of feature 0; the held-out loss must fall well below the base rate's."""
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(200)]
    targets = [list((f[:, 0] > 0) * 0.9 + 0.05) for f in feats]
    held = np.arange(200) % 10 == 0
    head, fit = fit_value_head(feats, targets, held, learning_rate=1e-2, batch_size=16, max_epochs=30, patience=3,
                               seed=0)
    y = np.concatenate([t for t, h in zip(targets, held) if h])
    base = -np.mean(y * np.log(y.mean()) + (1 - y) * np.log(1 - y.mean()))
    assert fit["best_eval_loss"] < 0.6 * base
    again, fit2 = fit_value_head(feats, targets, held, learning_rate=1e-2, batch_size=16, max_epochs=30, patience=3,
                                 seed=0)
    assert fit2["best_eval_loss"] == fit["best_eval_loss"]  # one seed, one result
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values()))


def test_likelihood_verifier_round_trips_and_scores_independently_of_the_batch(lm_tok, tmp_path):
    lm, tok = lm_tok
    torch.manual_seed(0)
    head = ValueHead(lm.config.hidden_size + 5)
    torch.nn.init.normal_(head.mlp[0].weight, std=1.0)
    save_value_verifier(tmp_path, lm, tok, head, "prm")
    v1 = load_verifier(ModelSpec(str(tmp_path)), batch_size=1, progress=False)
    v8 = LikelihoodVerifier.from_spec(ModelSpec(str(tmp_path)), batch_size=8, progress=False)
    assert isinstance(v1, LikelihoodVerifier)
    prompts = [P.prompt] * (len(COMPLETIONS) + 1)
    completions = COMPLETIONS + [P.solution]  # a repeat is scored once and gets the same scores
    s1, t1 = v1.score(prompts, [split(c) for c in completions])
    s8, t8 = v8.score(prompts, [split(c) for c in completions])
    assert t1 == t8 and [len(s) for s in s1] == [4, 4, 2, 0, 4]
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(s1, s8)) and s1[0] == s1[-1]
    assert all(0 < x < 1 for s in s1 for x in s) and len(set(np.round(s1[0], 6))) > 1


@pytest.mark.parametrize("overhead", [0, value_head.CALL_OVERHEAD_TOKENS, 10**6])
def test_shared_prefix_features_match_one_forward_per_solution(lm_tok, monkeypatch, overhead):
    """Children of one beam share all but their last step: reading the prefix once changes no feature, however
    the passes are cut by length (a call per length, the default, one call) and with a solution that shares nothing."""
    monkeypatch.setattr(value_head, "CALL_OVERHEAD_TOKENS", overhead)
    lm, tok = lm_tok
    prompts, steps = [], []
    for c in COMPLETIONS:
        s = split(c)
        for j in range(len(s) + 1):  # every prefix of every completion, so groups of many sizes form
            prompts.append(P.prompt)
            steps.append(s[:j])
    steps.append(split(COMPLETIONS[0])[:1] + ["9+9\n"])  # a sibling that differs in its last step only
    prompts.append(P.prompt)
    steps.append(split(COMPLETIONS[1]))  # alone after its prompt: read whole with the prefixes
    prompts.append("Q:\n1+1\n")
    ref, ref_tokens = step_features(lm, tok, prompts, steps, batch_size=4)
    got, tokens = shared_step_features(lm, tok, prompts, steps, batch_size=4)
    assert [f.shape for f in got] == [f.shape for f in ref]
    for a, b in zip(got, ref):
        assert np.allclose(a, b, atol=1e-4)
    assert sum(tokens) < sum(ref_tokens)  # a shared prefix is read, and counted, once

