import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttc_utils.world import (
    WorldConfig,
    extract_answer,
    generate,
    grade,
    make_problem,
    max_line_chars,
    max_solution_chars,
    solution_steps,
    split_of,
    step_labels,
)

CFG = WorldConfig()


def test_make_problem_evaluates_left_to_right_mod_100():
    p = make_problem(37, [("+", 45), ("*", 3), ("-", 8)], 100)
    assert p.question == "37+45*3-8"
    assert p.steps == ("82*3-8", "46-8", "38")
    assert p.answer == 38 and p.num_steps == 3 and p.num_mul == 1
    assert p.text == "Q:\n37+45*3-8\n82*3-8\n46-8\n38\nA:38\n"
    assert make_problem(5, [("-", 55)], 100).answer == 50


def test_max_solution_chars_bounds_every_solution():
    for cfg in (WorldConfig(), WorldConfig(modulus=100, max_operand=99, max_steps=5)):
        bound = max_solution_chars(cfg)
        longest = max(len(p.solution) for p in generate(cfg, 3000, "train", seed=0, unique=False))
        assert longest <= bound <= longest + 12


def test_max_line_chars_bounds_every_question_and_step_line():
    for cfg in (WorldConfig(), WorldConfig(modulus=100, max_operand=99, max_steps=5)):
        bound = max_line_chars(cfg)
        problems = generate(cfg, 3000, "train", seed=0, unique=False)
        assert max(len(p.question) for p in problems) == bound
        # a step line and its newline fit in the bound: a step evaluates one operation of the line above
        assert max(len(s) + 1 for p in problems for s in p.steps) <= bound


def test_generator_is_deterministic_and_seed_dependent():
    a = generate(CFG, 50, "test", seed=3)
    b = generate(CFG, 50, "test", seed=3)
    c = generate(CFG, 50, "test", seed=4)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.text for p in a] != [p.text for p in c]


def test_splits_are_disjoint_and_test_questions_unique():
    train = generate(CFG, 3000, "train", seed=0, unique=False)
    test = generate(CFG, 500, "test", seed=0)
    assert not {p.question for p in train} & {p.question for p in test}
    assert len({p.question for p in test}) == len(test)
    assert all(split_of(p.question) == "test" for p in test)


def test_difficulty_knobs_are_respected():
    cfg = WorldConfig(min_steps=2, max_steps=3, ops="*", max_multiplier=4)
    ps = generate(cfg, 200, "train", seed=1, unique=False)
    assert {p.num_steps for p in ps} == {2, 3}
    assert all(p.num_mul == p.num_steps for p in ps)
    assert all(int(t) <= 4 for p in ps for t in p.question.split("*")[1:])


@pytest.mark.parametrize("field,value", [("min_steps", 0), ("max_steps", 0), ("ops", "+/"), ("modulus", 1)])
def test_bad_world_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        WorldConfig(**{field: value})


def test_answer_extraction_and_grading():
    assert extract_answer("12+3\n15\nA:15\n") == 15
    assert extract_answer("A:7\nA:8\n") == 7  # the first answer line counts
    assert extract_answer("15\n") is None
    assert extract_answer("A:1 5\n") is None
    assert extract_answer("A:\n") is None
    assert grade("A:15\n", 15) and not grade("A:16\n", 15)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.none(), st.integers(), st.floats(), st.lists(st.text())))
def test_grader_never_raises_on_garbage(garbage):
    assert grade(garbage, 15) in (True, False)
    assert extract_answer(garbage) is None or isinstance(extract_answer(garbage), int)
    p = make_problem(1, [("+", 2)], 100)
    labels = step_labels(p, garbage)
    assert all(isinstance(x, bool) for x in labels)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789+-*=:QA\n", max_size=60))
def test_grader_on_world_alphabet_garbage(text):
    got = extract_answer(text)
    assert grade(text, 3) == (got == 3)


def test_step_labels_mark_the_first_error_and_everything_after():
    p = make_problem(37, [("+", 45), ("*", 3), ("-", 8)], 100)
    assert step_labels(p, p.solution) == [True, True, True]
    wrong = "82*3-8\n47-8\n39\nA:39\n"
    assert step_labels(p, wrong) == [True, False, False]
    # a wrong step followed by a lucky right answer is still a wrong path
    lucky = "82*3-8\n47-9\n38\nA:38\n"
    assert grade(lucky, p.answer) and step_labels(p, lucky) == [True, False, False]
    assert solution_steps("a\n\nb\nA:1\nc") == ["a", "b"]
