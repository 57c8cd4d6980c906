"""The embedded world: a synthetic step-by-step arithmetic task with ground truth for every step.

A problem is a chain of operations evaluated left to right modulo `modulus` (100 in this example; the default
world, below, is mod 10):

    Q:                 <- the prompt: a header line and the question line
    37+45*3-8
    82*3-8             <- one solution step per line: the leftmost operation evaluated
    46-8
    38
    A:38               <- the final-answer line

Difficulty rises with the number of steps, the operand size and the share of multiplications.
The default world is single-digit arithmetic mod 10 (e.g. `Q:7+5*3-8`, steps `2*3-8`, `6-8`, `8`):
multi-digit arithmetic is out of reach of CPU-trainable models in minutes, while chains of up to
8 steps still spread the policy's per-question pass@1 over the whole 0-1 range.
Train and test splits are disjoint by construction: a question's split is a hash of its text.

    from ttc_utils.world import WorldConfig, generate
    problems = generate(WorldConfig(), n=5, split="test", seed=0)
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

import numpy as np

from .checks import check

OPS = "+-*"
TEST_FRACTION = 0.1  # share of the question space that belongs to the test split
_ANSWER_RE = re.compile(r"^A:(\d{1,9}(?:,\d{1,9})*)$")


@dataclass(frozen=True)
class WorldConfig:
    min_steps: int = 1  # fewest operations in a chain
    max_steps: int = 8  # most operations in a chain
    modulus: int = 10  # every intermediate result is taken modulo this
    max_operand: int = 9  # operands of + and - are drawn from 1..max_operand
    max_multiplier: int = 9  # operands of * are drawn from 2..max_multiplier
    ops: str = "+-*"  # the operation mix; each step draws one uniformly
    coprime_multipliers: bool = False  # multipliers only among those coprime to the modulus: every step is then a
    # bijection, so a chain that computes one wrong value can never reach the right answer by luck
    answer_trace: bool = False  # the final answer lists every intermediate value ("A:2,6,8"), so a chain that
    # computed a wrong value on the way cannot end on the right answer (with one value, mod 10, 1 in 10 does)

    def __post_init__(self):
        check(isinstance(self.min_steps, int) and self.min_steps >= 1, "min_steps", self.min_steps, "an int >= 1")
        check(isinstance(self.max_steps, int) and self.max_steps >= self.min_steps, "max_steps", self.max_steps,
               f"an int >= min_steps ({self.min_steps})")
        check(isinstance(self.modulus, int) and self.modulus >= 2, "modulus", self.modulus, "an int >= 2")
        check(isinstance(self.max_operand, int) and self.max_operand >= 1, "max_operand", self.max_operand,
               "an int >= 1")
        check(isinstance(self.max_multiplier, int) and self.max_multiplier >= 2, "max_multiplier",
               self.max_multiplier, "an int >= 2")
        check(isinstance(self.ops, str) and len(self.ops) > 0 and set(self.ops) <= set(OPS)
               and len(set(self.ops)) == len(self.ops), "ops", self.ops, f"distinct characters from {OPS!r}")
        check(not self.coprime_multipliers or "*" not in self.ops
              or any(math.gcd(m, self.modulus) == 1 for m in range(2, self.max_multiplier + 1)),
              "coprime_multipliers", self.coprime_multipliers,
              f"False, or a max_multiplier ({self.max_multiplier}) with a multiplier coprime to modulus {self.modulus}")


@dataclass(frozen=True)
class Problem:
    qid: str  # stable id: a hash of the question text
    question: str  # e.g. "37+45*3-8"
    steps: tuple[str, ...] = field(repr=False)  # reference solution lines, e.g. ("37+45=82", ...)
    answer: int | str = 0  # the final value; with answer_trace, every intermediate value joined by commas ("2,6,8")
    num_steps: int = 0
    num_mul: int = 0  # how many of the steps are multiplications

    @property
    def prompt(self) -> str:
        # The question gets a line of its own, laid out like every step line, so that one rule
        # ("evaluate the leftmost operation of the line above") covers every step, the first included.
        return f"Q:\n{self.question}\n"

    @property
    def solution(self) -> str:
        """The reference completion: steps and the final-answer line."""
        return "".join(s + "\n" for s in self.steps) + f"A:{self.answer}\n"

    @property
    def text(self) -> str:
        return self.prompt + self.solution


def _apply(op: str, a: int, b: int, modulus: int) -> int:
    if op == "+":
        return (a + b) % modulus
    if op == "-":
        return (a - b) % modulus
    return (a * b) % modulus


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def split_of(question: str) -> str:
    """'test' for a fixed ~10% of all questions, 'train' for the rest; a pure function of the text."""
    return "test" if _hash(question) % 1000 < TEST_FRACTION * 1000 else "train"


def make_problem(start: int, ops: list[tuple[str, int]], modulus: int = 10, answer_trace: bool = False) -> Problem:
    """Build a problem from its start value and (op, operand) pairs, computing every step.

    Each step rewrites the expression with its leftmost operation evaluated, so a step only needs
    the line above it (a tiny model learns this local rule in far fewer updates than looking up
    the k-th operation of the question).
    """
    terms = [f"{op}{b}" for op, b in ops]
    question = str(start) + "".join(terms)
    steps, values, value = [], [], start
    for i, (op, b) in enumerate(ops):
        value = _apply(op, value, b, modulus)
        values.append(value)
        steps.append(str(value) + "".join(terms[i + 1:]))
    answer = ",".join(map(str, values)) if answer_trace else value
    return Problem(qid=f"{_hash(question):016x}", question=question, steps=tuple(steps), answer=answer,
                   num_steps=len(ops), num_mul=sum(op == "*" for op, _ in ops))


def _draw(cfg: WorldConfig, rng: np.random.Generator, num_steps: int) -> Problem:
    start = int(rng.integers(0, cfg.modulus))
    ops = []
    for _ in range(num_steps):
        op = cfg.ops[int(rng.integers(len(cfg.ops)))]
        hi = cfg.max_multiplier if op == "*" else cfg.max_operand
        lo = 2 if op == "*" else 1
        if op == "*" and cfg.coprime_multipliers:
            choices = [m for m in range(lo, hi + 1) if math.gcd(m, cfg.modulus) == 1]
            ops.append((op, choices[int(rng.integers(len(choices)))]))
        else:
            ops.append((op, int(rng.integers(lo, hi + 1))))
    return make_problem(start, ops, cfg.modulus, cfg.answer_trace)


def generate(cfg: WorldConfig, n: int, split: str, seed: int, unique: bool = True) -> list[Problem]:
    """Draw `n` problems of one split, deterministically from `seed`.

    The number of steps is uniform over [min_steps, max_steps]. With `unique`, no question repeats
    (use it for test sets; pretraining data may repeat short questions, as any corpus does).
    """
    check(split in ("train", "test"), "split", split, "'train' or 'test'")
    check(isinstance(n, int) and n >= 0, "n", n, "an int >= 0")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    out, seen, tries = [], set(), 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n + 10_000:
            raise ValueError(f"n={n} is not allowed: the world has too few distinct {split} questions "
                             f"for {cfg}; lower n or widen the world")
        p = _draw(cfg, rng, int(rng.integers(cfg.min_steps, cfg.max_steps + 1)))
        if split_of(p.question) != split or (unique and p.question in seen):
            continue
        seen.add(p.question)
        out.append(p)
    return out


def max_solution_chars(cfg: WorldConfig) -> int:
    """An upper bound on the length of a correct solution (steps and answer line), in characters.

    With one token per character it bounds a sampler's max_new_tokens: longer samples are garbage.
    """
    num = len(str(cfg.modulus - 1))
    term = 1 + max(len(str(cfg.max_operand)), len(str(cfg.max_multiplier)))
    k = cfg.max_steps
    answer = k * (num + 1) - 1 if cfg.answer_trace else num
    return sum(num + (k - j) * term + 1 for j in range(1, k + 1)) + 2 + answer + 1


def max_line_chars(cfg: WorldConfig) -> int:
    """The longest line of a correct solution or question, newline excluded: a bound on one step's length."""
    term = 1 + max(len(str(cfg.max_operand)), len(str(cfg.max_multiplier)))
    num = len(str(cfg.modulus - 1))
    answer = cfg.max_steps * (num + 1) - 1 if cfg.answer_trace else num
    return max(num + cfg.max_steps * term, 2 + answer)


def max_problem_tokens(cfg: WorldConfig) -> int:
    """An upper bound on the tokens of one problem with its solution, as the models see it in training: one token
    per character of prompt and solution, plus <bos> and <eos>."""
    return 1 + len("Q:\n") + max_line_chars(cfg) + 1 + max_solution_chars(cfg) + 1


def extract_answer(text) -> int | str | None:
    """The integer on the first final-answer line ('A:<digits>'), the string of a trace answer ('A:2,6,8'), or None
    if there is none.

    Never raises: anything that is not a well-formed answer is 'no answer'.
    """
    if not isinstance(text, str):
        return None
    for line in text.split("\n"):
        if line.startswith("A:"):
            m = _ANSWER_RE.match(line)
            if m is None:
                return None
            got = m.group(1)
            return got if "," in got else int(got)
    return None


def grade(text, answer: int | str) -> bool:
    """True iff the completion's final answer equals `answer` (a one-value trace "8" equals 8); garbage counts as
    wrong, never raises."""
    got = extract_answer(text)
    return got is not None and str(got) == str(answer)


def solution_steps(text) -> list[str]:
    """The step lines of a completion: every line before the final-answer line (or the end)."""
    if not isinstance(text, str):
        return []
    steps = []
    for line in text.split("\n"):
        if line.startswith("A:"):
            break
        if line:
            steps.append(line)
    return steps


def step_labels(problem: Problem, text) -> list[bool]:
    """Per step line of `text`: True iff this step and all before it match the reference solution.

    This is the ground truth a process reward model should learn: a step is good when the
    solution is still on the one correct path after it.
    """
    labels, ok = [], True
    for i, line in enumerate(solution_steps(text)):
        ok = ok and i < len(problem.steps) and line == problem.steps[i]
        labels.append(ok)
    return labels
