"""Verifier training in the standard format (both heads), scoring a table of solutions, the first-error check,
and the verifier-quality statistics."""
import numpy as np
import pandas as pd
import pytest

from ttc_utils.cache import Cache
from ttc_utils.model_spec import ModelSpec
from ttc_utils.registry import load_verifier
from ttc_utils.scoring import policy_logprobs, score_solutions
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.token_verifier import TransformersVerifier
from ttc_utils.value_head import LikelihoodVerifier
from ttc_utils.verifier_quality import first_error_drops, roc_auc, within_question_auc
from ttc_utils.verifier_training import (
    VerifierTrainConfig,
    train_record,
    train_verifier,
    training_targets,
    verifier_from_policy,
)
from ttc_utils.world import make_problem

PROBLEMS = [make_problem(3, [("+", 4), ("*", 2), ("-", 1)], 10), make_problem(5, [("*", 3)], 10)]
TASK = ArithmeticTask()
split = TASK.split_steps


def spec(path):
    return ModelSpec(str(path))


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
    path = train_verifier(cache, spec(tiny_policy_dir), TASK, _labels(), "prm", cfg, disable_tqdm=True)
    rec = train_record(path)
    assert rec["kind"] == "prm" and rec["held_out_questions"] >= 1 and rec["eval_solutions"] >= 1
    assert rec["train_solutions"] + rec["eval_solutions"] == 12 and np.isfinite(rec["best_eval_loss"])
    v = load_verifier(spec(path), progress=False)
    assert isinstance(v, LikelihoodVerifier if head == "likelihood" else TransformersVerifier)
    scores, _ = v.score([PROBLEMS[0].prompt], [split(PROBLEMS[0].solution)])
    assert len(scores[0]) == 4
    mtime = (tmp_path / path.split("/")[-1] / "model.safetensors").stat().st_mtime
    assert train_verifier(cache, spec(tiny_policy_dir), TASK, _labels(), "prm", cfg) == path  # cached
    assert (tmp_path / path.split("/")[-1] / "model.safetensors").stat().st_mtime == mtime
    orm = train_verifier(cache, spec(tiny_policy_dir), TASK, _labels(), "orm", cfg, disable_tqdm=True)
    assert orm != path
    # the same completions read after other prompts (a revision ORM with history) are another verifier
    other = _labels().assign(prompt=lambda d: d.prompt + "1\nA:1\n" + d.prompt)
    assert train_verifier(cache, spec(tiny_policy_dir), TASK, other, "orm", cfg, disable_tqdm=True) != orm


@pytest.mark.parametrize("head", ["likelihood", "finetune"])
def test_score_solutions_and_first_error_drops(tiny_policy_dir, tmp_path, head):
    cache = Cache(tmp_path)
    cfg = VerifierTrainConfig(head=head, batch_size=4, max_epochs=1, eval_every=2)
    path = train_verifier(cache, spec(tiny_policy_dir), TASK, _labels(), "prm", cfg, disable_tqdm=True)
    p = PROBLEMS[0]  # 3+4*2-1: steps 7*2-1, 4-1, 3
    samples = pd.DataFrame({"qid": [p.qid] * 3, "sample_index": [0, 1, 2],
                            "text": [p.solution, "7*2-1\n5-1\n4\nA:4\n", "9\nA:9\njunk"]})
    scores = score_solutions(cache, spec(path), TASK, PROBLEMS, samples)
    assert [len(s) for s in scores.step_scores] == [4, 4, 2]  # junk after the answer line is not a step
    assert (scores["last"] == [s[-1] for s in scores.step_scores]).all()
    assert (scores["min"] <= scores["last"]).all() and (scores["prod"] <= scores["min"]).all()
    drops = first_error_drops(TASK, PROBLEMS, samples, scores)
    assert drops.sample_index.tolist() == [1]  # sample 2's first error is its first step: nothing before it
    assert drops.first_error.tolist() == [1]
    assert drops["drop"].iloc[0] == (drops["at"].iloc[0] < drops["before"].iloc[0])


def test_new_verifier_layers_start_as_the_identity(tiny_policy_dir):
    """With extra layers, the verifier's backbone computes exactly the policy's features at the start."""
    import torch
    from transformers import AutoModelForCausalLM

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


@pytest.mark.parametrize("kwargs,name", [({"label_tokens": "first"}, "label_tokens"),
                                         ({"extra_layers": -1}, "extra_layers"),
                                         ({"patience": 0}, "patience"), ({"eval_fraction": 1.0}, "eval_fraction"),
                                         ({"head": "linear"}, "head")])
def test_bad_verifier_training_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VerifierTrainConfig(**kwargs)


def test_policy_logprobs_match_an_unbatched_forward(tiny_policy_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = PROBLEMS[0]
    samples = pd.DataFrame({"qid": [p.qid] * 3, "sample_index": [0, 1, 2],
                            "text": [p.solution, "7*2-1\n5-1\nA:4\n", "9\nA:9\njunk"]})
    got = policy_logprobs(Cache(tmp_path), spec(tiny_policy_dir), TASK, PROBLEMS, samples, batch_size=2)
    lm = AutoModelForCausalLM.from_pretrained(tiny_policy_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_policy_dir)
    for text, s, m in zip(samples.text, got.logprob_sum, got.logprob_min):
        completion = TASK.through_answer(text)
        ids = tok(p.prompt + completion, return_tensors="pt").input_ids
        start = len(tok(p.prompt).input_ids)
        with torch.no_grad():
            logp = torch.log_softmax(lm(input_ids=ids).logits[0], -1)
        v = [logp[t - 1, ids[0, t]].item() for t in range(start, ids.shape[1])]
        assert s == pytest.approx(sum(v), abs=1e-4) and m == pytest.approx(min(v), abs=1e-4)


def test_within_question_auc_ignores_question_difficulty():
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
    path = train_verifier(Cache(tmp_path), spec(tiny_policy_dir), TASK, _labels(), "prm", cfg, disable_tqdm=True)
    v = load_verifier(spec(path), progress=False)
    assert isinstance(v, TransformersVerifier)
    assert v.model.config.num_hidden_layers == 2  # the tiny policy's one layer plus one
    scores, _ = v.score([PROBLEMS[1].prompt], [split(PROBLEMS[1].solution)])
    assert len(scores[0]) == 2


def test_within_question_auc_equals_scipy_per_question():
    # the vectorised rank sums against the reference: scipy's Mann-Whitney U on each question (in groupby's sorted
    # order, so the mean adds the same floats in the same order)
    rng = np.random.default_rng(0)
    qids = np.repeat([f"q{i}" for i in range(60)], 16)
    scores = rng.integers(0, 6, len(qids)) / 5  # few distinct values: many ties
    correct = rng.random(len(qids)) < rng.random(60).repeat(16)
    aucs = [roc_auc(scores[qids == q], correct[qids == q]) for q in sorted(set(qids))
            if 0 < correct[qids == q].mean() < 1]
    assert within_question_auc(scores, correct, qids) == np.mean(aucs)
    mixed = next(q for q in sorted(set(qids)) if 0 < correct[qids == q].mean() < 1)
    scores[np.flatnonzero(qids == mixed)[0]] = np.nan  # a NaN score propagates, as in scipy
    assert np.isnan(within_question_auc(scores, correct, qids))
