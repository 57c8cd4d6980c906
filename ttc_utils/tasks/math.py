"""MATH (Hendrycks et al. 2021) as a task: the MATH-500 test split, steps as paragraphs, answers in `\\boxed{}`.

Snell et al. 2024 evaluate on MATH-500 (the split of Lightman et al. 2023). A solution is a sequence of paragraphs
separated by a blank line (the step delimiter of search-and-learn and of the paper's PRM set-ups); its final answer
is the content of its last `\\boxed{...}`, graded against the reference answer with math-verify (symbolic
equivalence through sympy, under a timeout), so `\\frac{1}{2}`, `0.5` and `1/2` are one answer.

    task = MathTask(path="../shared/data/math500/test.jsonl")   # or MathTask() for the hub dataset
    problems = task.problems("test", 5, seed=0)
    text = task.prompt(problems[0])                # instruction + question; the policy continues it
    task.is_correct(problems[0], "So $r=3$.\\n\\nThe answer is $\\boxed{(3, \\frac{\\pi}{2})}$.")   # True
    equivalent("\\dfrac{1}{2}", "0.5")             # True: the grading rule on its own
"""
from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DATASET = "HuggingFaceH4/MATH-500"
STEP_END = "\n\n"
FIELDS = ("problem", "solution", "answer", "subject", "level", "unique_id")
SUFFIXES = (".jsonl", ".parquet")
INSTRUCTION = "Solve the following math problem step by step. Put your final answer in \\boxed{}."
# Qwen2.5-Math-Instruct's own system prompt and chat template, written out: the policy continues the assistant turn
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
CHATML = "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
# a base model (no chat template) learns the format from worked examples: steps as paragraphs, the answer boxed. These
# two are written here, not taken from MATH, so no test question leaks into a prompt.
FEW_SHOT = (("What is the sum of the first three positive odd integers?",
             "The first three positive odd integers are 1, 3 and 5.\n\nTheir sum is $1 + 3 + 5 = 9$.\n\n"
             "The answer is $\\boxed{9}$."),
            ("Solve for $x$: $2x + 6 = 14$.",
             "Subtract 6 from both sides: $2x = 8$.\n\nDivide both sides by 2: $x = 4$.\n\n"
             "The answer is $\\boxed{4}$."))
PROMPT_STYLES = ("plain", "chatml", "fewshot")
MAX_SOLUTION_TOKENS = 2048  # search-and-learn's cap on a MATH solution
MAX_STEP_TOKENS = 512  # a step (paragraph) longer than this is cut, as a runaway one would be

# `\boxed` or `\fbox` as whole control words (not the start of a longer name such as `\boxedfoo`)
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


@dataclass(frozen=True)
class MathProblem:
    qid: str  # MATH's unique_id, e.g. "test/precalculus/807.json"
    question: str
    solution: str
    answer: str
    subject: str
    level: int  # 1 (easiest) to 5


# ---------------------------------------------------------------------------------------------- loading


def load_math(path=None, dataset: str = DATASET, split: str = "test") -> list[MathProblem]:
    """MATH problems in file order: from a local `.jsonl`/`.parquet` with MATH-500's fields, else from the hub.

    The hub is read through `datasets`, imported here so that grading and local files need neither it nor a
    network; offline, pass `path`."""
    if path is None:
        return _load_hub(dataset, split)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} does not exist or is not a file")
    if path.suffix not in SUFFIXES:
        raise ValueError(f"path={str(path)!r} has suffix {path.suffix!r}: expected one of {list(SUFFIXES)}")
    rows = _read_jsonl(path) if path.suffix == ".jsonl" else _read_parquet(path)
    return [_to_problem(row, f"path={str(path)!r} row {i}") for i, row in enumerate(rows)]


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"path={str(path)!r} line {lineno} is not JSON: {e}") from e
    return rows


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path, use_threads=False).to_pylist()  # see cache.read_parquet


def _load_hub(dataset: str, split: str) -> list[MathProblem]:
    hint = f"pass a local path=... (a .jsonl or .parquet file with the fields {list(FIELDS)})"
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise ImportError(f"load_math(path=None) reads {dataset!r} through the `datasets` library, which is not "
                          f"installed: install it or {hint}") from e
    try:
        rows = load_dataset(dataset, split=split)
    except Exception as e:  # offline, unknown dataset, hub down: all end the same way for the caller
        raise RuntimeError(f"could not load {dataset!r} split={split!r} from the hub ({type(e).__name__}: {e}); "
                           f"{hint}") from e
    return [_to_problem(row, f"dataset={dataset!r} row {i}") for i, row in enumerate(rows)]


def _to_problem(row, where: str) -> MathProblem:
    if not isinstance(row, dict):
        # a row that is not an object is bad data in the file, as a missing field is: the same ValueError
        kind = type(row).__name__
        raise ValueError(f"{where} is a {kind}, not an object with the fields {list(FIELDS)}")  # noqa: TRY004
    missing = [f for f in FIELDS if row.get(f) is None]
    if missing:
        raise ValueError(f"{where} lacks the field(s) {missing}; required: {list(FIELDS)}")
    return MathProblem(qid=str(row["unique_id"]), question=str(row["problem"]), solution=str(row["solution"]),
                       answer=str(row["answer"]), subject=str(row["subject"]), level=_level(row["level"], where))


def _level(value, where: str) -> int:
    """MATH-500 stores 1..5; the original MATH json stores "Level 3" (and "Level ?" for a few problems)."""
    found = re.fullmatch(r"\s*(?:Level\s*)?(\d+)\s*", str(value))
    if found is None:
        raise ValueError(f"{where} has level={value!r}: expected an integer such as 3 or 'Level 3'")
    return int(found.group(1))


# ---------------------------------------------------------------------------------------------- answers


def last_boxed(text) -> str | None:
    """The content of the last `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5` in `text`; None if absent or unbalanced.

    Braces are counted (a backslash escapes the next character, so `\\{` and `\\}` do not count), which keeps
    nested groups such as `\\boxed{\\frac{\\sqrt{3}}{2}}` whole; a box inside another box belongs to it (the last
    box is the last outermost one). Never raises."""
    span = _last_box_span(text)
    return None if span is None or span[2] is None else text[span[1]:span[2]]


def _last_box_span(text) -> tuple[int, int, int | None] | None:
    """(start of the last outermost box command, start of its content, end of its content or None if unbalanced)."""
    if not isinstance(text, str):
        return None
    last, inside_until = None, 0
    for match in _BOX.finditer(text):
        if match.start() < inside_until:
            continue  # part of the previous box's content
        last = _box_at(text, match)
        if last[2] is not None:
            inside_until = last[2]
    return last


def _box_at(text: str, match: re.Match) -> tuple[int, int, int | None]:
    """The span of the box whose command `match` found: `{...}` after optional spaces, else a bare token (up to
    whitespace, `$` or the `}` of an enclosing group)."""
    i = match.end()
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        return match.start(), i + 1, _closing_brace(text, i)
    end = i
    while end < len(text) and not text[end].isspace() and text[end] not in "$}":
        end += 1
    return match.start(), i, (end if end > i else None)


def _closing_brace(text: str, i: int) -> int | None:
    """The index of the `}` closing the `{` at `text[i]`, or None."""
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return None


def equivalent(a: str, b: str, timeout_s: float = 5.0) -> bool:
    """True iff answer `a` equals reference answer `b`: the same text up to whitespace, else `math_verify_equal`.

    Both sides are bare answers (box contents). Never raises (anything odd: False)."""
    try:
        if not isinstance(a, str) or not isinstance(b, str):
            return False
        a, b = " ".join(a.split()), " ".join(b.split())
        return bool(a) and (a == b or math_verify_equal(a, b, timeout_s))
    except Exception:  # noqa: BLE001 (grading never raises: anything odd is "not equal")
        return False


def math_verify_equal(a: str, b: str, timeout_s: float = 5.0) -> bool:
    """math-verify's verdict alone on answer `a` against reference `b` (no string fast path). Never raises.

    math-verify is not symmetric: `b` is its gold (`x=3` against gold `3` is accepted as an assignment). Its
    timeouts use SIGALRM: whole seconds, main thread only. So `timeout_s` is rounded up, and off the main thread
    the comparison runs without one (the caller must bound its time there). The timeout holds per parse and per
    comparison of parsed candidates, so one call can take a few times `timeout_s`."""
    # imported here: math-verify brings sympy (~0.4 s), which notebooks on the arithmetic world never need
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    try:
        if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
            return False
        if not (_balanced(a) and _balanced(b)):
            return False  # wrapped in \\boxed{} an unbalanced answer would end the box early: `3}+1` would read as 3
        seconds = _alarm_seconds(timeout_s)
        gold = parse(_as_latex(b), parsing_timeout=seconds)
        pred = parse(_as_latex(a), parsing_timeout=seconds)
        return bool(gold and pred and verify(gold, pred, timeout_seconds=seconds))
    except (Exception, TimeoutException):  # noqa: BLE001 (sympy can fail in any way on odd input)
        return False


def _balanced(text: str) -> bool:
    """True iff every unescaped `{` in `text` is closed, in order."""
    depth, j = 0, 0
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth < 0:
            return False
        j += 1
    return depth == 0


def _as_latex(answer: str) -> str:
    """An answer as math-verify expects a solution's answer: boxed inside math mode. Boxes inside the answer are
    mere formatting and are dropped, else math-verify would grade only them (`\\boxed{5}+1` would read as 5)."""
    return "$\\boxed{" + _BOX.sub("", answer) + "}$"


def _alarm_seconds(timeout_s) -> int | None:
    """math-verify's timeout argument: whole seconds (signal.alarm), None where signals cannot be used."""
    if threading.current_thread() is not threading.main_thread():
        return None  # signal.signal raises off the main thread; the caller must bound the time itself
    if timeout_s is None or timeout_s <= 0:
        return None
    return max(1, math.ceil(timeout_s))


# ---------------------------------------------------------------------------------------------- task


class MathTask:
    """MATH-500 behind the `tasks.base.Task` protocol; problems are read on first use (grading needs no data)."""

    name = "math"
    step_delimiter = STEP_END

    def __init__(self, path=None, dataset: str = DATASET, timeout_s: float = 5.0, prompt_style: str = "plain",
                 max_tokens: int = MAX_SOLUTION_TOKENS):
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style={prompt_style!r} is not allowed: expected one of {list(PROMPT_STYLES)}")
        self.path = path
        self.dataset = dataset
        self.timeout_s = timeout_s
        self.prompt_style = prompt_style
        self.max_tokens = max_tokens
        self._problems: list[MathProblem] | None = None

    def __repr__(self) -> str:
        return (f"MathTask(path={self.path!r}, dataset={self.dataset!r}, timeout_s={self.timeout_s!r}, "
                f"prompt_style={self.prompt_style!r}, max_tokens={self.max_tokens!r})")

    @property
    def key(self) -> str:
        """What names the task in cache keys: the prompt style changes every prompt, so every sample."""
        return self.name if self.prompt_style == "plain" else f"{self.name}-{self.prompt_style}"

    def all_problems(self) -> list[MathProblem]:
        """Every problem of the split, loaded once."""
        if self._problems is None:
            self._problems = load_math(self.path, self.dataset, "test")
        return self._problems

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[MathProblem]:
        """The first `n` problems (all when n is None or too large): MATH-500 is one fixed split, so `seed` has
        nothing to draw and is accepted for the protocol only."""
        if split == "train":
            raise ValueError("split='train' is not allowed: MATH-500 has no train split here; use split='test'")
        if split != "test":
            raise ValueError(f"split={split!r} is not allowed: expected 'test'")
        if n is not None and n < 0:
            raise ValueError(f"n={n!r} is not allowed: expected None or n >= 0")
        return list(self.all_problems()[:n])

    def split_of(self, problem: MathProblem) -> str:
        """MATH's ids start with their split ("test/precalculus/807.json")."""
        return problem.qid.split("/", 1)[0] if "/" in problem.qid else "test"

    def question(self, problem: MathProblem) -> str:
        return problem.question

    def prompt(self, problem: MathProblem, attempts: Sequence[str] = ()) -> str:
        if self.prompt_style != "plain" and attempts:
            raise ValueError(f"prompt_style={self.prompt_style!r} has no revision format: previous attempts need "
                             f"'plain'")
        if self.prompt_style == "chatml":
            return CHATML.format(system=QWEN_SYSTEM, user=problem.question)
        if self.prompt_style == "fewshot":
            shots = "".join(f"Problem: {q}{STEP_END}Solution: {a}{STEP_END}" for q, a in FEW_SHOT)
            return f"{INSTRUCTION}{STEP_END}{shots}Problem: {problem.question}{STEP_END}Solution: "
        text = f"{INSTRUCTION}\n\n{problem.question}{STEP_END}"
        if not attempts:
            return text
        # revisions: earlier attempts come after the question, each labelled, then the slot for the new one
        for k, attempt in enumerate(attempts, 1):
            text += f"Previous attempt {k}:{STEP_END}{attempt.rstrip()}{STEP_END}"
        return text + f"New attempt:{STEP_END}"

    def split_steps(self, completion: str) -> list[str]:
        """Paragraphs, each ending at the first `\\n\\n` after the last (where a stop string would cut)."""
        if not isinstance(completion, str) or not completion:
            return []
        pieces = completion.split(STEP_END)
        return [p + STEP_END for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])

    def is_final_step(self, step: str) -> bool:
        return isinstance(step, str) and _BOX.search(step) is not None

    def through_answer(self, completion: str) -> str:
        """The steps up to and including the one where the last box ends (a box may span a blank line)."""
        span = _last_box_span(completion)
        if span is None:
            return completion
        cut = span[2] if span[2] is not None else span[0] + 1
        kept, length = [], 0
        for step in self.split_steps(completion):
            kept.append(step)
            length += len(step)
            if length >= cut:
                break
        return "".join(kept)

    def extract_answer(self, text) -> str | None:
        """The last box's content, stripped; a box holding only a box is opened (`\\boxed{\\boxed{5}}` gives 5)."""
        answer = last_boxed(text)
        while answer is not None:
            answer = answer.strip()
            span = _last_box_span(answer)
            if span is None or span[0] != 0 or span[2] != len(answer) - 1:
                break
            answer = answer[span[1]:span[2]]
        return answer or None

    def is_correct(self, problem: MathProblem, text) -> bool:
        try:
            answer = self.extract_answer(text)
            return answer is not None and equivalent(answer, problem.answer, self.timeout_s)
        except Exception:  # noqa: BLE001 (a malformed problem or text is "wrong", never an error)
            return False

    def features(self, problem: MathProblem) -> dict:
        return {"subject": problem.subject, "level": problem.level}

    def step_truth(self, problem: MathProblem, completion: str) -> None:
        return None  # MATH has no per-step ground truth (PRM labels come from Monte Carlo rollouts)

    def max_solution_tokens(self) -> int:
        return self.max_tokens

    def max_step_tokens(self) -> int:
        return min(MAX_STEP_TOKENS, self.max_tokens)
