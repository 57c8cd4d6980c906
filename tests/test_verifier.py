"""The verifier interface: step ends, one forward pass per solution, padding-invariant scores; aggregation."""
import pytest

from ttc_utils.aggregation import AGGREGATIONS, aggregate
from ttc_utils.labels import step_prefixes
from ttc_utils.model_spec import ModelSpec
from ttc_utils.registry import load_verifier
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.token_verifier import TransformersVerifier
from ttc_utils.tokenizer import build_tokenizer
from ttc_utils.verifier import _ids_and_offsets, encode_many, encode_steps, step_end_offsets
from ttc_utils.verifier_quality import roc_auc

TASK = ArithmeticTask()
split = TASK.split_steps
through_answer = TASK.through_answer


def verifier(path, **kw):
    v = load_verifier(ModelSpec(str(path)), progress=False, **kw)
    assert isinstance(v, TransformersVerifier)
    return v


def test_step_ends_are_newlines_and_a_trailing_partial_step():
    assert step_end_offsets(split("7\nA:7\n")) == [1, 5]
    assert step_end_offsets(split("7\nA:7")) == [1, 4]
    assert step_end_offsets(split("")) == []
    assert step_prefixes(TASK, "3+4\n7\nA:7\n") == ["3+4\n", "3+4\n7\n", "3+4\n7\nA:7\n"]


def test_encode_steps_points_at_each_step_end_token():
    tok = build_tokenizer()
    prompt, completion = "Q:\n3+4\n", "7\nA:7\n"
    ids, positions = encode_steps(tok, prompt, split(completion))
    assert [tok.decode([ids[p]]) for p in positions] == ["\n", "\n"]
    assert tok.decode(ids[:positions[0] + 1], skip_special_tokens=True) == prompt + "7\n"
    assert len(positions) == 2


def test_encode_many_reads_what_the_library_call_gives():
    """The fast tokenizer's own batch encoding (read directly) gives the ids and offsets of the transformers call;
    a backend set to pad goes through the library call, which pads nothing unless asked."""
    texts = ["Q:\n3+4\n7\nA:7\n", "Q:\n5*6-2\n", "", "Q:\n9\n8"]
    tok = build_tokenizer()
    enc = tok(texts, return_offsets_mapping=True)
    library = [(ids, [tuple(o) for o in offs]) for ids, offs in zip(enc["input_ids"], enc["offset_mapping"])]
    assert [(list(i), [tuple(o) for o in offs]) for i, offs in _ids_and_offsets(tok, texts)] == library
    padded = build_tokenizer()
    padded.backend_tokenizer.enable_padding(pad_id=tok.pad_token_id, length=40)
    assert [list(i) for i, _ in _ids_and_offsets(padded, texts)] == [i for i, _ in library]
    assert encode_many(tok, [], []) == []


def test_through_answer_cuts_after_the_answer_line():
    assert through_answer("1\nA:1\n2\nA:3\n") == "1\nA:1\n"
    assert through_answer("1\nA:1") == "1\nA:1"
    assert through_answer("1\n2\n") == "1\n2\n"


def test_scores_do_not_depend_on_the_batch(tiny_verifier_dir):
    v1 = verifier(tiny_verifier_dir, batch_size=1)
    v8 = verifier(tiny_verifier_dir, batch_size=8)
    prompts = ["Q:\n3+4\n", "Q:\n5*6-2\n", "Q:\n3+4\n", "Q:\n9\n"]
    completions = ["7\nA:7\n", "0-2\n8\nA:8\n", "7\nA:7\n", "A:9"]
    s1, t1 = v1.score(prompts, [split(c) for c in completions])
    s8, t8 = v8.score(prompts, [split(c) for c in completions])
    assert [len(s) for s in s8] == [2, 3, 2, 1]
    for a, b in zip(s1, s8):
        assert a == pytest.approx(b, abs=1e-5)
        assert all(0 < x < 1 for x in a)
    assert s8[0] == s8[2]  # identical pairs share one forward pass and one score
    assert t1 == t8 == [len(p) + len(c) + 1 for p, c in zip(prompts, completions)]  # + bos


def test_a_prefix_scores_like_the_same_steps_of_the_full_solution(tiny_verifier_dir):
    """A causal verifier's score of a step depends only on the text up to it: scoring every step in
    one forward pass gives what scoring each prefix separately would."""
    v = verifier(tiny_verifier_dir)
    full, _ = v.score(["Q:\n5*6-2\n"], [split("0-2\n8\nA:8\n")])
    parts, _ = v.score(["Q:\n5*6-2\n"] * 3, [split(p) for p in step_prefixes(TASK, "0-2\n8\nA:8\n")])
    assert full[0] == pytest.approx([p[-1] for p in parts], abs=1e-5)


def test_loading_a_missing_verifier_fails_clearly(tiny_policy_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="verifier_path"):
        ModelSpec(str(tmp_path / "missing"), param="verifier_path").check()


def test_aggregations():
    s = [0.9, 0.4, 0.8]
    assert aggregate(s, "last") == 0.8
    assert aggregate(s, "min") == 0.4
    assert aggregate(s, "prod") == pytest.approx(0.9 * 0.4 * 0.8)
    assert all(aggregate([], how) == 0.0 for how in AGGREGATIONS)
    with pytest.raises(ValueError, match="aggregation='mean'"):
        aggregate(s, "mean")


def test_roc_auc_is_the_rank_probability():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.3, 0.9, 0.5], [True, False, True]) == pytest.approx(0.0)
