"""PRM labels from Monte Carlo rollouts (with a fake policy for exact bookkeeping), verifier training in
the standard format, scoring a table of solutions, and the first-error check."""
import numpy as np
import pandas as pd
import pytest

import ttc_utils.prm as prm
import ttc_utils.sampling as sampling
from ttc_utils.cache import Cache
from ttc_utils.policy import SamplingParams
from ttc_utils.prm import (VerifierTrainConfig, first_error_drops, mc_labels, score_solutions, train_record,
                           train_verifier, training_targets)
from ttc_utils.value_head import LikelihoodVerifier
from ttc_utils.verifier import TransformersVerifier, load_verifier
from ttc_utils.world import make_problem

PROBLEMS = [make_problem(3, [("+", 4), ("*", 2), ("-", 1)], 10), make_problem(5, [("*", 3)], 10)]


class OraclePolicy:
    """Even samples: the reference solution. Odd samples: a wrong first step, then its (wrong) answer.
    A rollout from a prefix on the reference path finishes it correctly; from any other prefix it answers
    the prefix's last value. Records the prompts of every call."""
    calls = []

    @classmethod
    def from_pretrained(cls, path, **kw):
        return cls()

    def sample_shared(self, prompts, params, seed):
        return self.sample(prompts, params, seed)

    def sample(self, prompts, params, seed):
        OraclePolicy.calls.append(list(prompts))
        rows = []
        for i, p in enumerate(prompts):
            question = p.split("\n")[1]
            prob = next(q for q in PROBLEMS if q.question == question)
            done = p.split("\n")[2:-1]
            for s in range(params.n):
                if not done:
                    wrong = (prob.answer + 1) % 10
                    text = prob.solution if s % 2 == 0 else f"{wrong}\nA:{wrong}\n"
                elif list(prob.steps[:len(done)]) == done:
                    text = "".join(x + "\n" for x in prob.steps[len(done):]) + f"A:{prob.answer}\n"
                else:
                    text = f"A:{done[-1]}\n"
                rows.append((i, s, text, len(text), "stop"))
        return pd.DataFrame(rows, columns=["prompt_index", "sample_index", "text", "num_tokens", "finish_reason"])


@pytest.fixture
def oracle(monkeypatch):
    OraclePolicy.calls = []
    monkeypatch.setattr(sampling, "TransformersPolicy", OraclePolicy)
    monkeypatch.setattr(prm, "TransformersPolicy", OraclePolicy)
    return OraclePolicy


def test_mc_labels_are_rollout_success_rates_per_step(oracle, tmp_path):
    labels = mc_labels(Cache(tmp_path), "fake/oracle", PROBLEMS, SamplingParams(n=4, max_new_tokens=40), rollouts=3,
                       seed=0)
    assert len(labels) == 8
    for r in labels.itertuples():
        prob = next(q for q in PROBLEMS if q.qid == r.qid)
        n_steps = r.completion.count("\n")
        assert len(r.targets) == len(r.truth) == n_steps
        assert r.targets[-1] == float(r.correct)  # the answer line: the solution's own correctness
        if r.sample_index % 2 == 0:
            assert r.correct and list(r.targets) == [1.0] * n_steps and all(r.truth)
            assert r.completion == prob.solution
        else:
            assert not r.correct and list(r.targets) == [0.0, 0.0] and list(r.truth) == [False, False]
    # rollouts are shared by identical prefixes: one prompt per distinct (question, prefix), n=3 each
    rollout_prompts = [p for call in oracle.calls for p in call if p.count("\n") > 2]
    assert len(rollout_prompts) == len(set(rollout_prompts)) == (3 + 1) + (1 + 1)


def test_mc_labels_drop_solutions_without_an_answer_and_resume_from_cache(oracle, tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    first = mc_labels(cache, "fake/oracle", PROBLEMS, SamplingParams(n=2, max_new_tokens=40), rollouts=2, seed=1)
    calls = len(oracle.calls)
    again = mc_labels(cache, "fake/oracle", PROBLEMS, SamplingParams(n=2, max_new_tokens=40), rollouts=2, seed=1)
    assert len(oracle.calls) == calls  # nothing sampled again
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(ValueError, match="rollouts"):
        mc_labels(cache, "fake/oracle", PROBLEMS, SamplingParams(n=2), rollouts=0, seed=1)


def test_orm_targets_are_the_final_correctness_at_every_step():
    labels = pd.DataFrame({"correct": [True, False], "targets": [[0.5, 1.0], [0.7, 0.2, 0.0]]})
    assert training_targets(labels, "prm") == [[0.5, 1.0], [0.7, 0.2, 0.0]]
    assert training_targets(labels, "orm") == [[1.0, 1.0], [0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="kind"):
        training_targets(labels, "value")


def _labels():
    rows = []
    for i in range(12):
        p = PROBLEMS[i % 2]
        good = i % 3 != 0
        text = p.solution if good else f"{(p.answer + 1) % 10}\nA:{(p.answer + 1) % 10}\n"
        n = text.count("\n")
        rows.append({"qid": f"{p.qid}-{i % 4}", "sample_index": i, "prompt": p.prompt, "completion": text,
                     "correct": good, "targets": [float(good)] * n, "truth": [good] * n, "rollouts": 1})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("head", ["likelihood", "finetune"])
def test_train_verifier_saves_a_loadable_model_once(tiny_policy_dir, tmp_path, head):
    cache = Cache(tmp_path)
    cfg = VerifierTrainConfig(head=head, batch_size=4, max_epochs=2, eval_every=2, learning_rate=1e-3)
    path = train_verifier(cache, str(tiny_policy_dir), _labels(), "prm", cfg, disable_tqdm=True)
    rec = train_record(path)
    assert rec["kind"] == "prm" and rec["held_out_questions"] >= 1 and rec["eval_solutions"] >= 1
    assert rec["train_solutions"] + rec["eval_solutions"] == 12 and np.isfinite(rec["best_eval_loss"])
    v = load_verifier(path, progress=False)
    assert isinstance(v, LikelihoodVerifier if head == "likelihood" else TransformersVerifier)
    scores, _ = v.score([PROBLEMS[0].prompt], [PROBLEMS[0].solution])
    assert len(scores[0]) == 4
    mtime = (tmp_path / path.split("/")[-1] / "model.safetensors").stat().st_mtime
    assert train_verifier(cache, str(tiny_policy_dir), _labels(), "prm", cfg) == path  # cached: no retraining
    assert (tmp_path / path.split("/")[-1] / "model.safetensors").stat().st_mtime == mtime
    orm = train_verifier(cache, str(tiny_policy_dir), _labels(), "orm", cfg, disable_tqdm=True)
    assert orm != path


@pytest.mark.parametrize("head", ["likelihood", "finetune"])
def test_score_solutions_and_first_error_drops(tiny_policy_dir, tmp_path, head):
    cache = Cache(tmp_path)
    cfg = VerifierTrainConfig(head=head, batch_size=4, max_epochs=1, eval_every=2)
    path = train_verifier(cache, str(tiny_policy_dir), _labels(), "prm", cfg, disable_tqdm=True)
    p = PROBLEMS[0]  # 3+4*2-1: steps 7*2-1, 4-1, 3
    samples = pd.DataFrame({"qid": [p.qid] * 3, "sample_index": [0, 1, 2],
                            "text": [p.solution, "7*2-1\n5-1\n4\nA:4\n", "9\nA:9\njunk"]})
    scores = score_solutions(cache, path, PROBLEMS, samples)
    assert [len(s) for s in scores.step_scores] == [4, 4, 2]  # junk after the answer line is not a step
    assert (scores["last"] == [s[-1] for s in scores.step_scores]).all()
    assert (scores["min"] <= scores["last"]).all() and (scores["prod"] <= scores["min"]).all()
    drops = first_error_drops(PROBLEMS, samples, scores)
    assert drops.sample_index.tolist() == [1]  # sample 2's first error is its first step: nothing before it
    assert drops.first_error.tolist() == [1]
    assert drops["drop"].iloc[0] == (drops["at"].iloc[0] < drops["before"].iloc[0])


def test_new_verifier_layers_start_as_the_identity(tiny_policy_dir):
    """With extra layers, the verifier's backbone computes exactly the policy's features at the start."""
    import torch
    from transformers import AutoModelForCausalLM

    from ttc_utils.prm import verifier_from_policy
    policy = AutoModelForCausalLM.from_pretrained(tiny_policy_dir).eval()
    ids = torch.tensor([[1, 19, 18, 21, 7, 14, 8, 21, 11, 21]])
    ref = policy.model(input_ids=ids).last_hidden_state
    for extra in (0, 2):
        v = verifier_from_policy(str(tiny_policy_dir), VerifierTrainConfig(extra_layers=extra)).eval()
        assert v.config.num_hidden_layers == policy.config.num_hidden_layers + extra
        assert torch.allclose(v.model(input_ids=ids).last_hidden_state, ref, atol=1e-6)
    frozen = verifier_from_policy(str(tiny_policy_dir), VerifierTrainConfig(extra_layers=1, freeze_policy_layers=True))
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "model.norm", "score")) for n in trainable)


@pytest.mark.parametrize("kwargs,name", [({"label_tokens": "first"}, "label_tokens"), ({"extra_layers": -1}, "extra_layers"),
                                         ({"patience": 0}, "patience"), ({"eval_fraction": 1.0}, "eval_fraction"),
                                         ({"head": "linear"}, "head")])
def test_bad_verifier_training_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VerifierTrainConfig(**kwargs)


def test_policy_logprobs_match_an_unbatched_forward(tiny_policy_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ttc_utils.prm import policy_logprobs
    p = PROBLEMS[0]
    samples = pd.DataFrame({"qid": [p.qid] * 3, "sample_index": [0, 1, 2],
                            "text": [p.solution, "7*2-1\n5-1\nA:4\n", "9\nA:9\njunk"]})
    got = policy_logprobs(Cache(tmp_path), str(tiny_policy_dir), PROBLEMS, samples, batch_size=2)
    lm, tok = AutoModelForCausalLM.from_pretrained(tiny_policy_dir).eval(), AutoTokenizer.from_pretrained(tiny_policy_dir)
    for text, s, m in zip(samples.text, got.logprob_sum, got.logprob_min):
        completion = prm.through_answer(text)
        ids = tok(p.prompt + completion, return_tensors="pt").input_ids
        start = len(tok(p.prompt).input_ids)
        with torch.no_grad():
            logp = torch.log_softmax(lm(input_ids=ids).logits[0], -1)
        v = [logp[t - 1, ids[0, t]].item() for t in range(start, ids.shape[1])]
        assert s == pytest.approx(sum(v), abs=1e-4) and m == pytest.approx(min(v), abs=1e-4)


def test_within_question_auc_ignores_question_difficulty():
    from ttc_utils.prm import within_question_auc
    # the scores rank questions perfectly (pooled AUC 1) but samples within a question backwards
    scores = [0.9, 0.95, 0.1, 0.15]
    correct = [True, False, True, False]
    qids = ["easy", "easy", "hard", "hard"]
    assert within_question_auc(scores, correct, qids) == 0.0
    assert within_question_auc([0.2, 0.1, 0.6, 0.5], correct, qids) == 1.0
    assert np.isnan(within_question_auc([0.1, 0.2], [True, True], ["a", "a"]))


def test_per_token_labels_and_extra_layers_train_and_load(tiny_policy_dir, tmp_path):
    cfg = VerifierTrainConfig(head="finetune", batch_size=4, max_epochs=1, eval_every=2, label_tokens="all",
                              extra_layers=1)
    path = train_verifier(Cache(tmp_path), str(tiny_policy_dir), _labels(), "prm", cfg, disable_tqdm=True)
    v = TransformersVerifier.from_pretrained(path, progress=False)
    assert v.model.config.num_hidden_layers == 2  # the tiny policy's one layer plus one
    scores, _ = v.score([PROBLEMS[1].prompt], [PROBLEMS[1].solution])
    assert len(scores[0]) == 2
