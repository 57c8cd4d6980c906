"""Revision trajectories and chains: k in range and capped, the closest wrong answer last, correct targets,
training questions only, context truncation, budget = sequential x parallel."""
import numpy as np
import pandas as pd
import pytest

from ttc_utils.revisions import (
    MAX_ATTEMPTS,
    chain_context,
    chain_shape,
    closest,
    on_reference,
    parting_pairs,
    trajectories,
)
from ttc_utils.tasks.arithmetic import ArithmeticTask

TASK = ArithmeticTask()
TRAIN = TASK.problems("train", 30, 0)


def graded(problems, per_question=12, right_every=3):
    """Samples of each question: every `right_every`-th one is the reference solution, the rest are wrong
    at different distances from it, one without a parsable answer."""
    rows = []
    for p in problems:
        right = "".join(s + "\n" for s in p.steps) + f"A:{p.answer}\n"
        for i in range(per_question):
            if i % right_every == 0:
                text, answer, ok = right, str(p.answer), True
            elif i == per_question - 1:
                text, answer, ok = "garbage", None, False
            else:
                wrong = (int(p.answer) + i) % 10
                text, answer, ok = right[:-2 - i % 3] + "0" * (i % 3) + f"{wrong}\n", str(wrong), False
            rows.append({"qid": p.qid, "sample_index": i, "text": text, "answer": answer, "correct": ok})
    return pd.DataFrame(rows)


def test_trajectories_follow_the_recipe():
    samples = graded(TRAIN)
    traj = trajectories(TASK, TRAIN, samples, seed=0)
    assert len(traj) == int(samples.correct.sum())  # one per correct answer
    by_q = samples.groupby("qid")
    for row in traj.itertuples():
        q = by_q.get_group(row.qid)
        wrong = q.text[~q.correct & q.answer.notna()].tolist()
        assert 0 <= row.k <= min(MAX_ATTEMPTS, len(wrong)) and len(row.attempts) == row.k
        assert row.target in set(q.text[q.correct])  # the target is always correct
        assert all(a in wrong for a in row.attempts)  # never an unparsable answer, never a right one
        assert len(set(row.attempts)) == row.k  # drawn without replacement
        if row.k:
            assert row.attempts[-1] == wrong[closest(row.target, wrong)]
    assert set(traj.k) == set(range(MAX_ATTEMPTS + 1))  # every k drawn somewhere
    pd.testing.assert_frame_equal(traj, trajectories(TASK, TRAIN, samples, seed=0))  # deterministic


def test_k_is_capped_by_the_wrong_answers_available():
    samples = graded(TRAIN, per_question=4, right_every=2)  # 2 right, 1 wrong, 1 unparsable per question
    traj = trajectories(TASK, TRAIN, samples, seed=1)
    assert traj.k.max() == 1


def test_closest_is_by_character_edit_distance():
    assert closest("12+3=5\n", ["99\n", "12+3=6\n", "12+4=6\n"]) == 1


def test_no_test_question_reaches_the_training_data():
    test = TASK.problems("test", 3, 0)
    with pytest.raises(ValueError, match="problems"):
        trajectories(TASK, TRAIN + test, graded(TRAIN + test))


@pytest.mark.parametrize("bad", [-1, 5, 1.5])
def test_more_wrong_attempts_than_four_is_an_error(bad):
    with pytest.raises(ValueError, match="max_attempts"):
        trajectories(TASK, TRAIN, graded(TRAIN), max_attempts=bad)


def test_a_chain_keeps_the_most_recent_attempts():
    attempts = [f"a{i}" for i in range(7)]
    assert chain_context(attempts) == ["a3", "a4", "a5", "a6"]
    assert chain_context(attempts[:2], 4) == ["a0", "a1"] and chain_context(attempts, 1) == ["a6"]
    with pytest.raises(ValueError, match="context"):
        chain_context(attempts, 0)


def test_a_budget_is_sequential_times_parallel():
    for n in (1, 2, 4, 16, 128):
        for s in (1, 2, 4, 8, 16, 128):
            if n % s == 0:
                seq, par = chain_shape(n, s)
                assert seq * par == n and seq == s
    with pytest.raises(ValueError, match="sequential"):
        chain_shape(16, 3)
    with pytest.raises(ValueError, match="budget"):
        chain_shape(-4, 2)


def test_orm_labels_read_each_attempt_after_the_attempts_it_saw():
    from ttc_utils.revisions import orm_labels
    p = TRAIN[0]
    right = "".join(s + "\n" for s in p.steps) + f"A:{p.answer}\n"
    texts = ["A:1\n", "garbage", "A:2\n", "A:3\n", "A:4\n", right]
    chains = pd.DataFrame({"qid": p.qid, "chain": 0, "step": range(1, 7), "text": texts,
                           "answer": ["1", None, "2", "3", "4", str(p.answer)], "correct": [False] * 5 + [True]})
    labels = orm_labels(TASK, TRAIN, chains, context=4)
    assert len(labels) == 5  # the unparsable attempt is dropped
    last = labels.iloc[-1]
    assert last.prompt == TASK.prompt(p, texts[1:5]) and last.correct  # the 4 attempts before it, oldest first
    assert last.targets == [1.0] * len(TASK.split_steps(right))
    assert labels.iloc[0].prompt == p.prompt  # the first attempt saw none
    alone = orm_labels(TASK, TRAIN, chains, history=False)
    assert (alone.prompt == p.prompt).all()


def test_an_arithmetic_prompt_with_attempts_ends_where_a_new_attempt_starts():
    # every answer line in the prompt is followed by the question again, never by the end of the prompt: a model
    # then writes eos only after its own answer line, as in pretraining
    p = TRAIN[0]
    a, b = "1\nA:1\n", "2\nA:2"
    assert TASK.prompt(p) == p.prompt
    assert TASK.prompt(p, [a, b]) == p.prompt + a + p.prompt + b + "\n" + p.prompt
    lines = TASK.prompt(p, [a, b]).split("\n")
    assert all(nxt == "Q:" for line, nxt in zip(lines, lines[1:]) if line.startswith("A:"))


def test_context_effect_compares_followers_with_first_attempts_on_the_same_questions():
    # question 0: first attempts always right; question 1: always wrong; a revision after a wrong attempt is right
    rows = [(0, c, s, True) for c in range(2) for s in (1, 2)] + [(1, 0, 1, False), (1, 0, 2, True)]
    from ttc_utils.revisions import context_effect
    out = context_effect(pd.DataFrame(rows, columns=["qid", "chain", "step", "correct"])).set_index("previous attempt")
    assert out.loc["after a correct attempt"].tolist() == [2, 1.0, 1.0]
    assert out.loc["after a wrong attempt"].tolist() == [1, 1.0, 0.0]  # better than fresh samples of question 1
    seeded = context_effect(pd.DataFrame(rows, columns=["qid", "chain", "step", "correct"]).assign(seed=3))
    assert seeded.attempts.tolist() == [2, 1] or seeded.attempts.tolist() == [1, 2]


def test_the_exclusion_bound_is_what_never_repeating_a_tried_answer_gives():
    from ttc_utils.revisions import exclusion_bound

    def question(qid, answers, right):
        return [(qid, a, a == right) for a in answers]
    rows = (question("one wrong answer", ["7", "7", "7", "3"], "3")  # excluding 7 leaves only the right answer
            + question("distinct wrong answers", ["1", "2", "3", "4"], "4")  # excluding one: 1/3; two distinct: 1/2
            + question("never right", ["5", "6"], "0")
            + question("always right", ["2", "2"], "2")
            + question("unparsable", [None, None, "8"], "8"))  # "no answer" is not an answer one can avoid
    samples = pd.DataFrame(rows, columns=["qid", "answer", "correct"])
    out = exclusion_bound(samples, max_attempts=2, draws=400, seed=0).set_index("previous_wrong_attempts")["pass@1"]
    per_question_k1 = [1.0, 1 / 3, 0.0, 1.0, 1 / 3]
    assert out[0] == pytest.approx(np.mean([0.25, 0.25, 0.0, 1.0, 1 / 3]))
    assert out[1] == pytest.approx(np.mean(per_question_k1))
    # two draws with replacement from 3 distinct wrong answers are distinct 2/3 of the time: 1/3 * 1/3 + 2/3 * 1/2
    assert out[2] == pytest.approx(np.mean([1.0, 1 / 9 + 1 / 3, 0.0, 1.0, 1 / 3]), abs=0.02)
    assert exclusion_bound(samples, max_attempts=2, draws=400, seed=0).equals(
        exclusion_bound(samples, max_attempts=2, draws=400, seed=0))
    with pytest.raises(ValueError, match="max_attempts"):
        exclusion_bound(samples, max_attempts=-1)


def test_the_exclusion_bound_equals_the_draw_by_draw_loop():
    """The vectorised bound against the plain loop it replaced: the same draws (rng.choice's stream), the same
    means, on questions with repeated wrong answers and unparsable ones."""
    from ttc_utils.revisions import exclusion_bound

    rng = np.random.default_rng(3)
    rows = [(f"q{q}", a, a == "0") for q in range(30) for a in rng.choice(["0", "1", "2", "3", None], size=12)]
    samples = pd.DataFrame(rows, columns=["qid", "answer", "correct"])

    def loop(samples, max_attempts, draws, seed):
        rng, per_k = np.random.default_rng([seed, 7]), [[] for _ in range(max_attempts + 1)]
        for _, g in samples.groupby("qid", sort=True):
            correct = g.correct.to_numpy(dtype=bool)
            share = g.answer.value_counts(normalize=True, dropna=False).to_dict()
            wrong, pass1 = g.answer[~correct & g.answer.notna()].tolist(), correct.mean()
            for k in range(max_attempts + 1):
                if k == 0 or not wrong or pass1 == 0:
                    per_k[k].append(pass1)
                    continue
                tried = [{wrong[i] for i in rng.choice(len(wrong), size=k)} for _ in range(draws)]
                per_k[k].append(np.mean([pass1 / (1 - sum(sorted(share[a] for a in t))) for t in tried]))
        return [float(np.mean(v)) for v in per_k]

    out = exclusion_bound(samples, max_attempts=4, draws=50, seed=1)["pass@1"].tolist()
    assert out == pytest.approx(loop(samples, 4, 50, 1), rel=1e-12)


def test_answer_repeats_compares_revisions_with_fresh_samples_of_the_same_questions():
    from ttc_utils.revisions import answer_repeats
    chains = pd.DataFrame([  # (qid, chain, step, answer, correct)
        ("q", 0, 1, "3", False), ("q", 0, 2, "3", False), ("q", 0, 3, "5", True),  # repeats 3, then leaves it
        ("q", 1, 1, None, False), ("q", 1, 2, "3", False),  # no answer before: not counted
        ("r", 0, 1, "1", True), ("r", 0, 2, "1", True),  # after a correct attempt: not counted
    ], columns=["qid", "chain", "step", "answer", "correct"])
    pool = pd.DataFrame([("q", "3", False), ("q", "3", False), ("q", "4", False), ("q", "5", True),
                         ("r", "1", True)], columns=["qid", "answer", "correct"])
    out = answer_repeats(chains, pool)
    assert out["attempts after a wrong attempt"] == 2
    assert out["repeat its answer"] == 0.5
    # a wrong pool sample of q has answer 3 (2 of 3 draws, share 0.5) or 4 (share 0.25)
    assert out["fresh samples would"] == pytest.approx((2 * 0.5 + 0.25) / 3)
    assert answer_repeats(chains.assign(seed=1), pool) == out


def test_parting_pairs_hold_a_correct_sample_and_the_wrong_one_closest_to_it():
    samples = graded(TRAIN)
    only_right = samples[samples.qid == TRAIN[0].qid].assign(correct=True, answer="1")  # no wrong sample: no pair
    samples = pd.concat([samples[samples.qid != TRAIN[0].qid], only_right])
    pairs = parting_pairs(samples, per_question=3, seed=0)
    assert set(pairs.qid) == {p.qid for p in TRAIN[1:]}
    assert pairs.groupby("qid").size().eq(3).all()
    for row in pairs.itertuples():
        g = samples[(samples.qid == row.qid) & samples.answer.notna()]
        assert row.right in set(g.text[g.correct]) and row.wrong in set(g.text[~g.correct])
        wrong = g.text[~g.correct].tolist()
        assert row.wrong == wrong[closest(row.right, wrong)]
    assert pairs.equals(parting_pairs(samples, per_question=3, seed=0))
    # the control context: the wrong attempt of another question's pair
    assert (pairs.unrelated.to_numpy() == pairs.wrong.to_numpy()[np.roll(np.arange(len(pairs)), -3)]).all()
    wrong_of = samples[~samples.correct.astype(bool)].groupby("qid").text.agg(set)
    assert all(u not in wrong_of[q] for q, u in zip(pairs.qid, pairs.unrelated))
    one = parting_pairs(samples[samples.qid == TRAIN[1].qid], per_question=2, seed=0)
    assert len(one) == 2 and one.unrelated.isna().all()  # one question: nothing unrelated to show


def test_on_reference_asks_whether_the_right_attempt_still_computes_right_where_the_two_part():
    from ttc_utils.world import make_problem

    p = make_problem(6, [("-", 3), ("+", 1), ("*", 7)])  # 3+1*7, 4*7, 8, A:8
    assert p.steps == ("3+1*7", "4*7", "8") and p.answer == 8
    ref = "3+1*7\n4*7\n8\nA:8\n"
    slip = "3+1*7\n5*7\n5\nA:5\n"  # a wrong value at step 2
    assert on_reference(TASK, p, slip, ref)
    lucky = "2+1*7\n3*7\n8\nA:8\n"  # a wrong step 1, the right answer by luck
    assert not on_reference(TASK, p, "2+1*7\n3*7\n1\nA:1\n", lucky)  # they part at step 3, after lucky's slip
    assert not on_reference(TASK, p, slip, lucky)  # they part at step 1, the lucky attempt's own wrong step
    half = "3+1*7\n9*7\n8\nA:8\n"  # step 1 right, step 2 wrong
    assert not on_reference(TASK, p, slip, half)  # they part at the first character of step 2
    assert on_reference(TASK, p, "3+1*7\n4*7\n8\nA:3\n", ref)  # they part on the answer line
    assert not on_reference(TASK, p, "2+1*7\n3*7\n8\nA:3\n", lucky)

    class NoStepTruth:  # a task like MATH: no per-step ground truth
        split_steps = TASK.split_steps

        def step_truth(self, problem, completion):
            return None

    assert on_reference(NoStepTruth(), p, slip, ref) is None
