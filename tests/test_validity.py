"""The world's validity criteria on hand-made samples and ladders: a lucky answer counts as a guess, a perfect
solution does not; each criterion is met or missed for the reason it states."""
import numpy as np
import pandas as pd

from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.validity import CRITERIA_COLUMNS, criteria_table, guess_rate
from ttc_utils.world import WorldConfig, generate, make_problem

TASK = ArithmeticTask(WorldConfig())


def samples_of(problems, texts_per_q):
    rows = [{"qid": p.qid, "sample_index": i, "text": t, "correct": TASK.is_correct(p, t)}
            for p, texts in zip(problems, texts_per_q) for i, t in enumerate(texts)]
    return pd.DataFrame(rows)


def test_guess_rate_counts_right_answers_reached_through_a_wrong_step():
    p = make_problem(7, [("+", 5), ("*", 2)])  # 7+5*2 -> 2*2 -> 4 (mod 10)
    assert p.steps == ("2*2", "4") and p.answer == 4
    lucky = "7*2\n4\nA:4\n"  # a wrong first step that lands on the right answer anyway
    s = samples_of([p], [[p.solution, p.solution, lucky, "2*2\n5\nA:5\n"]])
    assert guess_rate(TASK, [p], s) == 1 / 3  # of the three correct answers, one is a guess


def test_coprime_multipliers_never_let_one_wrong_value_reach_the_right_answer():
    world = WorldConfig(coprime_multipliers=True)
    for p in generate(world, 300, "train", seed=1):
        assert all(int(b) in (3, 7, 9) for op, b in zip(p.question[1::2], p.question[2::2]) if op == "*")
        start, ops = int(p.question[0]), list(zip(p.question[1::2], map(int, p.question[2::2])))
        if not ops:
            continue
        wrong = make_problem((start + 1) % 10, ops)  # one wrong value at the start, every step after it right
        assert wrong.answer != p.answer


def ladder_table(acc_gap=0.3, losses=(0.5, 0.4, 0.3), params=(100, 500, 1500), minutes=3.0, heads=(2, 3, 4)):
    names = ["a", "b", "c"]
    return pd.DataFrame({"name": names, "non_embedding_params": params, "tokens": [1000] * 3,
                         "wall_s": [minutes * 20] * 3, "hidden": [64, 96, 128], "heads": list(heads),
                         "heldout_loss": list(losses)})


def greedy_by_rung(problems, accuracies, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, acc in accuracies.items():
        out[name] = pd.DataFrame({"qid": [p.qid for p in problems], "correct": rng.random(len(problems)) < acc})
    return out


def test_criteria_table_is_met_by_a_valid_world_and_missed_for_each_stated_reason():
    problems = generate(WorldConfig(), 200, "test", seed=0)
    # a base whose per-question pass@1 is spread evenly: question i right on (i mod 10) of 9 samples
    texts = [[p.solution if j < (i % 10) else "0\nA:x\n" for j in range(9)] for i, p in enumerate(problems)]
    base = samples_of(problems, texts)
    greedy = greedy_by_rung(problems, {"a": 0.2, "b": 0.5, "c": 0.8})
    table = criteria_table(TASK, problems, base, ladder_table(params=(100, 500, 1500)), greedy)
    assert list(table.columns) == CRITERIA_COLUMNS
    met = dict(zip(table.criterion, table.met))
    guess = "(a) guess rate: correct answers reached through a wrong step"
    assert all(met.values()), table  # 15x parameters, 32-wide heads, an even spread, a clear ladder, no guesses
    bad = criteria_table(TASK, problems, base, ladder_table(losses=(0.5, 0.6, 0.3), params=(100, 500, 1000),
                                                            heads=(4, 3, 4), minutes=30),
                         greedy_by_rung(problems, {"a": 0.5, "b": 0.5, "c": 0.8}))
    met = dict(zip(bad.criterion, bad.met))
    assert met[guess]
    assert not met["(c) top / base non-embedding parameters"]  # 10x
    assert not met["(c) held-out loss falls rung by rung"]
    shown = dict(zip(bad.criterion, bad.value))
    assert shown["(c) held-out loss falls rung by rung"] == "0.5000 <= 0.6000 > 0.3000"  # where it rises, it says so
    assert not met["(c) b beats a in greedy accuracy"] and met["(c) c beats b in greedy accuracy"]
    assert not met["(e) attention head sizes vLLM's CPU attention accepts"]  # 64 / 4 = 16
    assert not met["(d) ladder training time"]


def test_a_trace_answer_is_wrong_whenever_a_value_on_the_way_is():
    world = WorldConfig(answer_trace=True)
    p = make_problem(7, [("+", 5), ("*", 2)], answer_trace=True)  # 7+5*2 -> 2*2 -> 4
    assert p.answer == "2,4" and p.solution.endswith("A:2,4\n")
    task = ArithmeticTask(world)
    assert task.is_correct(p, p.solution) and task.extract_answer(p.solution) == "2,4"
    assert not task.is_correct(p, "7*2\n4\nA:7,4\n")  # the lucky final value no longer makes the answer right
    one = make_problem(3, [("+", 4)], answer_trace=True)
    assert task.is_correct(one, "7\nA:7\n") and task.extract_answer("7\nA:7\n") == 7  # one value: a plain int
    assert task.extract_answer("A:2,,4\n") is None and task.extract_answer("A:2,4,\n") is None
