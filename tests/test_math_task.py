"""The MATH task: loading MATH-500, box extraction, paragraph steps and math-verify grading.

Tests on the real split read `../shared/data/math500/test.jsonl` (outside the repo) and skip when it is absent.
"""
from __future__ import annotations

import json
import random
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from ttc_utils.tasks import get_task
from ttc_utils.tasks.math import MathProblem, MathTask, equivalent, last_boxed, load_math, math_verify_equal

MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500" / "test.jsonl"

ROWS = [
    {"problem": "What is $1+1$?", "solution": "We add.\n\nSo $\\boxed{2}$.", "answer": "2", "subject": "Prealgebra",
     "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Halve 1.", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "answer": "\\frac{1}{2}",
     "subject": "Algebra", "level": "Level 3", "unique_id": "test/algebra/2.json"},
    {"problem": "Who?", "solution": "$\\boxed{\\text{Evelyn}}$", "answer": "\\text{Evelyn}", "subject": "Algebra",
     "level": 5, "unique_id": "test/algebra/3.json"},
]


@pytest.fixture(scope="module")
def real():
    if not MATH500.is_file():
        pytest.skip(f"MATH-500 not found at {MATH500} (the shared data folder is not in this checkout)")
    return load_math(MATH500)


@pytest.fixture
def small_jsonl(tmp_path):
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS[:2]) + "\n\n" + json.dumps(ROWS[2]) + "\n")
    return path


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------------------------- loading


def test_load_real_split(real):
    assert len(real) == 500
    assert len({p.qid for p in real}) == 500
    assert real[0].qid == "test/precalculus/807.json"  # file order kept
    for p in real:
        assert isinstance(p, MathProblem)
        assert all(isinstance(v, str) and v for v in (p.qid, p.question, p.solution, p.answer, p.subject))
        assert isinstance(p.level, int) and 1 <= p.level <= 5


def test_load_small_jsonl(small_jsonl):
    problems = load_math(small_jsonl)
    assert [p.qid for p in problems] == [r["unique_id"] for r in ROWS]
    assert problems[1] == MathProblem("test/algebra/2.json", "Halve 1.", ROWS[1]["solution"], "\\frac{1}{2}",
                                      "Algebra", 3)  # "Level 3" (original MATH json) reads as 3
    assert [p.level for p in problems] == [1, 3, 5]


def test_load_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**r, "level": int(str(r["level"])[-1])} for r in ROWS]
    path = tmp_path / "small.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert load_math(path) == load_math(_write_jsonl(tmp_path / "same.jsonl", rows))


def test_load_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="path=.*nope.jsonl"):
        load_math(missing)
    csv = tmp_path / "rows.csv"
    csv.write_text("problem,answer\n")
    with pytest.raises(ValueError, match=r"path=.*rows.csv.*'\.jsonl', '\.parquet'"):
        load_math(csv)
    lacking = _write_jsonl(tmp_path / "lacking.jsonl", [ROWS[0], {k: v for k, v in ROWS[1].items() if k != "answer"}])
    with pytest.raises(ValueError, match=r"path=.*lacking.jsonl.* row 1 lacks the field\(s\) \['answer'\]"):
        load_math(lacking)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match="path=.*broken.jsonl.* line 2 is not JSON"):
        load_math(broken)
    bad_level = _write_jsonl(tmp_path / "level.jsonl", [{**ROWS[0], "level": "hard"}])
    with pytest.raises(ValueError, match="path=.*level.jsonl.*level='hard'"):
        load_math(bad_level)


def test_hub_errors_say_to_pass_a_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now raises ImportError
    with pytest.raises(ImportError, match="pass a local path"):
        load_math()

    def unreachable(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=unreachable))
    with pytest.raises(RuntimeError, match="HuggingFaceH4/MATH-500.*hub unreachable.*pass a local path"):
        load_math()


# ---------------------------------------------------------------------------------------------- the task


def test_registry_builds_the_task(small_jsonl):
    task = get_task("math", path=small_jsonl)
    assert isinstance(task, MathTask) and task.name == "math" and task.step_delimiter == "\n\n"
    assert [p.qid for p in task.problems("test", 2, seed=0)] == ["test/prealgebra/1.json", "test/algebra/2.json"]


def test_problems_are_a_fixed_prefix(small_jsonl):
    task = MathTask(path=small_jsonl)
    assert task.problems("test", None, seed=0) == task.problems("test", 99, seed=1) == load_math(small_jsonl)
    assert task.problems("test", 1, seed=0) == task.problems("test", 1, seed=7)  # seed has nothing to draw
    assert task.problems("test", 0, seed=0) == []
    with pytest.raises(ValueError, match="no train split"):
        task.problems("train", 1, seed=0)
    with pytest.raises(ValueError, match="split='dev'"):
        task.problems("dev", 1, seed=0)


def test_prompt_and_attempts(small_jsonl):
    task = MathTask(path=small_jsonl)
    problem = task.problems("test", 1, seed=0)[0]
    plain = task.prompt(problem)
    assert plain == ("Solve the following math problem step by step. Put your final answer in \\boxed{}.\n\n"
                     "What is $1+1$?\n\n")
    revised = task.prompt(problem, ["It is $\\boxed{3}$.", "Maybe $\\boxed{4}$.\n\n"])
    assert revised.startswith(plain)
    assert revised[len(plain):] == ("Previous attempt 1:\n\nIt is $\\boxed{3}$.\n\n"
                                    "Previous attempt 2:\n\nMaybe $\\boxed{4}$.\n\nNew attempt:\n\n")


def test_steps_final_step_and_through_answer():
    task = MathTask()
    text = "First $x=1$.\n\nThen $y=2$.\n\nSo $\\boxed{3}$.\n\nCheck: fine."
    steps = task.split_steps(text)
    assert steps == ["First $x=1$.\n\n", "Then $y=2$.\n\n", "So $\\boxed{3}$.\n\n", "Check: fine."]
    assert [task.is_final_step(s) for s in steps] == [False, False, True, False]
    assert task.through_answer(text) == "First $x=1$.\n\nThen $y=2$.\n\nSo $\\boxed{3}$.\n\n"
    assert task.through_answer("no box\n\nat all") == "no box\n\nat all"
    two = "$\\boxed{1}$\n\nor $\\boxed{2}$ then\n\n"
    assert task.through_answer(two + "more") == two
    assert task.through_answer("a $\\boxed{\\begin{matrix}1\n\n2\\end{matrix}}$\n\nb") == \
        "a $\\boxed{\\begin{matrix}1\n\n2\\end{matrix}}$\n\n"  # a box spanning a blank line is kept whole
    assert task.split_steps("a\n\n\n\nb\n\n") == ["a\n\n", "\n\n", "b\n\n"]  # where a "\n\n" stop string cuts
    assert task.split_steps("") == [] and task.split_steps(None) == []


def test_extract_grade_features(small_jsonl):
    task = MathTask(path=small_jsonl)
    one, half, who = task.problems("test", None, seed=0)
    assert task.extract_answer("so $\\boxed{ \\frac{1}{2} }$.") == "\\frac{1}{2}"
    assert task.extract_answer("$\\boxed{\\boxed{5}}$") == "5"  # a box holding only a box is opened
    assert task.extract_answer("$\\boxed{}$") is None and task.extract_answer("no box") is None
    assert task.is_correct(half, "Halving: $\\boxed{0.5}$")
    assert task.is_correct(half, "$\\boxed{\\dfrac12}$") and not task.is_correct(half, "$\\boxed{2}$")
    assert task.is_correct(one, one.solution) and task.is_correct(who, "It is $\\boxed{Evelyn}$.")
    assert not task.is_correct(one, "2") and not task.is_correct(one, None) and not task.is_correct(None, "\\boxed{2}")
    assert task.features(half) == {"subject": "Algebra", "level": 3}
    assert task.step_truth(half, half.solution) is None


@pytest.mark.parametrize("text, expected", [
    ("$\\boxed{5}$", "5"),
    ("\\boxed{1} then \\boxed{2}", "2"),  # the last one
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),  # nested braces
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),  # escaped braces do not count
    ("\\boxed{\\left\\{ x \\right.}", "\\left\\{ x \\right."),
    ("\\boxed{\\boxed{x}+1}", "\\boxed{x}+1"),  # a box inside a box belongs to it
    ("\\boxed 5$ and more", "5"),  # bare form: up to `$` ...
    ("\\boxed 12 apples", "12"),  # ... or whitespace
    ("{\\boxed 7}", "7"),  # ... or the enclosing group's `}`
    ("\\boxed  {x}", "x"),
    ("\\fbox{A}", "A"),
    ("\\boxed{1} and \\boxed{2", None),  # the last is unbalanced
    ("\\boxedfoo{3}", None),  # another control word
    ("\\boxed", None),
    ("nothing here", None),
    (None, None),
    (42, None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


# ---------------------------------------------------------------------------------------------- real split

# Box contents of MATH-500 solutions that `equivalent` does not match with the reference answer: qid -> reason.
# Measured: none. In this split every `answer` is the solution's last box content verbatim, and math-verify
# also accepts every one of them on its own (without the string fast path).
KNOWN_MISSES: dict[str, str] = {}

# Neighbouring reference answers (row i, row i+1, cyclic) that math-verify judges equal: all rightly so.
NEIGHBOURS_EQUAL = {
    ("test/algebra/1837.json", "5", "x=5"),  # an assignment x=5 against gold 5: the same value
    ("test/number_theory/978.json", "7", "7"),  # two problems with the same answer
    ("test/number_theory/928.json", "3", "3"),
}


def test_solutions_box_their_answers(real):
    task = MathTask(path=MATH500)
    misses = {p.qid: (last_boxed(p.solution), p.answer) for p in real
              if not equivalent((last_boxed(p.solution) or "").strip(), p.answer)}
    print(f"\nMATH-500: {len(misses)} of {len(real)} solution boxes not equivalent to the answer: {misses}")
    assert set(misses) <= set(KNOWN_MISSES) and len(misses) <= len(KNOWN_MISSES)
    assert all(task.is_correct(p, p.solution) for p in real if p.qid not in KNOWN_MISSES)


def test_math_verify_alone_accepts_every_answer(real):
    """The fast path matches every row above; math-verify must parse and accept each answer by itself too."""
    rejected = [p.qid for p in real if not math_verify_equal(last_boxed(p.solution).strip(), p.answer, 2.0)]
    print(f"\nmath-verify alone rejects {len(rejected)} of {len(real)}: {rejected}")
    assert set(rejected) <= set(KNOWN_MISSES)


def test_neighbouring_answers_differ(real):
    """A false-positive check on real answers: distinct answers of consecutive problems must not match."""
    pairs = zip(real, real[1:] + real[:1])
    equal = {(p.qid, p.answer, q.answer) for p, q in pairs if math_verify_equal(q.answer, p.answer, 2.0)}
    assert equal == NEIGHBOURS_EQUAL


# ---------------------------------------------------------------------------------------------- equivalence

# (candidate, reference, expected). Expectations are what is mathematically right under MATH's grading
# conventions (units, `^\circ`, `\%`, `\text{}` and answer-choice parentheses are decoration; a bare list of
# solutions is unordered); each also holds with math-verify 0.9. Pairs where the two differ are in LIMITATIONS.
PAIRS = [
    # fractions
    ("\\frac{1}{2}", "0.5", True),
    ("0.5", "\\frac{1}{2}", True),
    ("1/2", "\\frac{1}{2}", True),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("\\tfrac12", "0.5", True),
    ("\\frac{2}{4}", "\\frac12", True),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True),
    ("\\frac{1}{3}", "0.33", False),  # a rounded decimal is not the fraction
    ("\\frac{1}{3}", "\\frac{1}{4}", False),
    ("-\\frac12", "\\frac12", False),
    # radicals, nested boxes
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\sqrt{8}", "2\\sqrt2", True),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", True),
    ("\\sqrt{3}/2", "\\frac{\\sqrt{3}}{2}", True),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True),
    ("\\sqrt{2}", "\\sqrt{3}", False),
    # intervals
    ("(0,1]", "(0,1]", True),
    ("(0, 1]", "(0,1]", True),
    ("(1,\\infty)\\cup(-\\infty,0)", "(-\\infty, 0) \\cup (1, \\infty)", True),
    ("(0,1]", "[0,1]", False),
    ("[0,1)", "[0,1]", False),
    ("(-\\infty,0]\\cup(1,\\infty)", "(-\\infty,0)\\cup(1,\\infty)", False),
    # units and text decoration
    ("10", "10\\text{ cm}", True),
    ("10\\text{ cm}", "10", True),
    ("5.4", "5.4 \\text{ cents}", True),
    ("\\$5.40", "5.4", True),
    ("\\frac{270}{7}", "\\frac{270}7\\text{ degrees}", True),
    ("11\\text{ cm}", "10\\text{ cm}", False),
    # degrees
    ("30", "30^\\circ", True),
    ("30^{\\circ}", "30^\\circ", True),
    ("31^\\circ", "30", False),
    # percent (the % sign is decoration: MATH accepts 50 and, as a value, 0.5)
    ("50", "50\\%", True),
    ("0.5", "50\\%", True),
    ("25\\%", "50\\%", False),
    # text answers and answer choices
    ("A", "\\text{(A)}", True),
    ("(C)", "\\text{(C)}", True),
    ("Evelyn", "\\text{Evelyn}", True),
    ("east", "\\text{east}", True),
    ("Ellipse", "\\text{ellipse}", True),
    ("B", "\\text{(C)}", False),
    ("\\text{(A)}", "\\text{(B)}", False),
    ("\\text{Navin}", "\\text{Evelyn}", False),
    ("Evlyne", "\\text{Evelyn}", False),  # a raw word against a \text{} gold is compared as one word
    ("\\text{odd}", "\\text{even}", False),
    # negative numbers
    ("- 3", "-3", True),
    ("-0", "0", True),
    ("-2.5", "-\\frac52", True),
    ("-3", "3", False),
    ("3", "-3", False),
    ("-\\infty", "\\infty", False),
    # sets, tuples, ordered pairs, vectors
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("2,1", "1,2", True),  # "enter all solutions separated by commas": unordered
    ("\\left(1,2\\right)", "(1, 2)", True),
    ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("(2,1)", "(1,2)", False),  # ordered pairs
    ("(1,3,2)", "(1,2,3)", False),
    ("\\{1,3\\}", "\\{1,2\\}", False),
    ("1,2", "1,2,3", False),
    ("(3,\\frac{\\pi}{3})", "\\left( 3, \\frac{\\pi}{2} \\right)", False),
    ("\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", False),
    # pi
    ("\\pi/2", "\\frac{\\pi}{2}", True),
    ("\\pi+\\pi", "2\\pi", True),
    ("4\\pi", "\\pi", False),
    ("3.14", "\\pi", False),
    # equations and expressions
    ("x=3", "3", True),
    ("x = 3", "3", True),
    ("3", "x=3", True),
    ("(x+1)^2", "x^2+2x+1", True),
    ("y=3", "x=3", False),
    ("x=4", "3", False),
    ("(x+2)^2", "x^2+2x+1", False),
    ("4i+3", "3+4i", True),
    ("3-4i", "3+4i", False),
    # numbers
    ("1,000", "1000", True),
    ("1{,}000", "1000", True),
    ("10^{100}", "1" + "0" * 100, True),
    # malformed
    ("3}+1", "3", False),  # unbalanced: must not read as a box holding 3
    ("5", "\\boxed{5}+1", False),  # a box inside an answer is formatting, not the answer
    ("", "", False),
    ("", "0", False),
    ("0", "", False),
]

# Pairs where math-verify 0.9 disagrees with the mathematically right verdict (expected here): not asserted,
# run as non-strict xfail so that a math-verify release that fixes one shows up as XPASS.
LIMITATIONS = [
    ("Evlyne", "Evelyn", False),  # two raw words parse as products of one-letter symbols, which commute
    ("\\frac{\\pi}{6}", "30^\\circ", True),  # degrees are not converted to radians (convert_degrees=False)
    ("45^\\circ", "\\frac{\\pi}{4}", True),
    ("1\\,000", "1000", True),  # a thin space as thousands separator is not removed
    ("1.5+0.5i", "\\frac32+\\frac12i", True),  # i times a non-integer: not compared as the imaginary unit
    ("i+i", "2i", True),
    ("0.333333", "\\frac{1}{3}", False),  # floats are compared after rounding to 6 places: approximations pass
    ("6.283185307", "2\\pi", False),
    ("3.14159265", "\\pi", False),
]


@pytest.mark.parametrize("candidate, reference, expected", PAIRS)
def test_equivalent_pairs(candidate, reference, expected):
    assert equivalent(candidate, reference) is expected


@pytest.mark.parametrize("candidate, reference, expected", [
    pytest.param(*pair, marks=pytest.mark.xfail(reason="known math-verify limitation", strict=False))
    for pair in LIMITATIONS])
def test_math_verify_limitations(candidate, reference, expected):
    assert equivalent(candidate, reference) is expected


def test_equivalent_rejects_non_strings():
    assert not equivalent(None, "1") and not equivalent("1", None) and not equivalent(1, 1)
    assert not math_verify_equal(["1"], "1")


def test_equivalent_off_the_main_thread():
    """Signals only work in the main thread: elsewhere the comparison runs without a timeout instead of failing."""
    results = []
    worker = threading.Thread(target=lambda: results.extend([equivalent("\\frac{1}{2}", "0.5"),
                                                             equivalent("x=4", "3")]))
    worker.start()
    worker.join(60)
    assert results == [True, False]


def test_timeout_bounds_a_slow_comparison():
    start = time.perf_counter()
    assert not equivalent("(x+1)^{3000}", "(x+2)^{3000}", timeout_s=1.0)
    assert time.perf_counter() - start < 15


# ---------------------------------------------------------------------------------------------- never raises

FRAGMENTS = [
    "\\boxed{", "\\boxed", "\\boxed ", "\\fbox{", "}", "{", "\\", "\\\\", "\\{", "\\}", "$", "$$", "\n\n", "\n", " ",
    "\\frac{", "\\sqrt", "^", "_", "\\left(", "\\right)", "(", ")", "[", "]", ",", "=", "-", "+", "\\pi", "\\infty",
    "\\text{", "\\circ", "\\%", "x", "y", "i", "0.5", "1/2", "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\cup",
    "é", "∞", "√", "\u200b", "🙂", "\x00", "\ud800",
]


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 25)):
        roll = rng.random()
        if roll < 0.05:
            parts.append(str(rng.randint(0, 9)) * rng.randint(50, 5000))  # very long numbers
        elif roll < 0.15:
            parts.append(chr(rng.randint(0, 0x10FFFF)))
        else:
            parts.append(rng.choice(FRAGMENTS))
    return "".join(parts)


def test_random_text_never_raises():
    """10,000 random strings through extraction, splitting and grading (a quarter of them hold a box, so reach
    math-verify); 500 of them also boxed whole, so that math-verify surely sees them."""
    rng = random.Random(0)
    task = MathTask(timeout_s=1.0)
    problem = MathProblem("q", "?", "", "\\frac{1}{2}", "Algebra", 1)
    for k in range(10_000):
        text = _random_text(rng)
        assert last_boxed(text) is None or isinstance(last_boxed(text), str)
        answer = task.extract_answer(text)
        assert answer is None or (isinstance(answer, str) and answer == answer.strip() and answer)
        steps = task.split_steps(text)
        assert "".join(steps) == text and all(s.endswith("\n\n") for s in steps[:-1])
        assert text.startswith(task.through_answer(text))
        assert all(isinstance(task.is_final_step(s), bool) for s in steps)
        assert isinstance(task.is_correct(problem, text), bool)
        if k % 20 == 0:
            assert isinstance(task.is_correct(problem, "\\boxed{" + text + "}"), bool)
            assert isinstance(equivalent(answer or text, text), bool)


def test_a_math_problem_knows_its_split():
    task = MathTask()
    assert task.split_of(MathProblem("test/algebra/2.json", "?", "", "1", "Algebra", 1)) == "test"
    assert task.split_of(MathProblem("train/algebra/7.json", "?", "", "1", "Algebra", 1)) == "train"


def test_prompt_styles_plain_chatml_and_fewshot_end_where_a_solution_starts():
    from ttc_utils.tasks.math import FEW_SHOT, MathProblem
    p = MathProblem("test/algebra/1.json", "What is $1+1$?", "", "2", "Algebra", 1)
    chat = MathTask(prompt_style="chatml").prompt(p)
    assert chat.startswith("<|im_start|>system\n") and chat.endswith("<|im_start|>assistant\n") and p.question in chat
    shot = MathTask(prompt_style="fewshot")
    text = shot.prompt(p)
    assert text.endswith(f"Problem: {p.question}\n\nSolution: ") and text.count("Problem: ") == len(FEW_SHOT) + 1
    # the worked examples are in the task's own format: paragraph steps, a boxed answer the grader reads
    for question, solution in FEW_SHOT:
        assert len(shot.split_steps(solution)) >= 3 and shot.extract_answer(solution) is not None
    assert MathTask(prompt_style="fewshot").key == "math-fewshot" and MathTask().key == "math"
    with pytest.raises(ValueError, match="prompt_style='fewshot' has no revision format"):
        shot.prompt(p, ["an earlier attempt"])
    with pytest.raises(ValueError, match="prompt_style='chat' is not allowed"):
        MathTask(prompt_style="chat")


def test_no_few_shot_example_is_a_math500_question():
    from ttc_utils.tasks.math import FEW_SHOT
    if not MATH500.is_file():
        pytest.skip(f"MATH-500 not found at {MATH500}")
    questions = {p.question for p in MathTask(path=MATH500).problems("test")}
    assert not questions & {q for q, _ in FEW_SHOT}
