"""The task interface: what a problem is, its prompt, how a solution splits into steps and how it is graded.

Nothing outside a task knows its answer format or its step delimiter: sampling, Monte Carlo labels, verifiers,
search and evaluation all go through these methods. The embedded arithmetic world is one task
(`tasks.arithmetic`), MATH another (`tasks.math`); a new task is one module plus `register_task`.

Rules every task keeps:
- `split_steps(completion)` returns pieces whose concatenation is the completion; every piece but possibly the
  last ends with `step_delimiter` (a completion cut by a stop string keeps the stop string, see `policy`).
- `extract_answer` and `is_correct` never raise: anything malformed is "no answer" / wrong.
- answers are hashable (ints, strings, tuples): majority voting groups samples by equal answers.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol


class Task(Protocol):
    name: str  # registry name, e.g. "arithmetic" or "math"
    step_delimiter: str  # what ends one step, e.g. "\n"; sent to the policy as a stop string in step-level search
    key: str  # what names the task in cache keys: `name`, plus anything that changes its prompts

    def question(self, problem) -> str:
        """The question alone, without any prompt around it: what an open PRM reads before the steps."""

    def problems(self, split: str, n: int, seed: int) -> list:
        """`n` problems of `split` ('train' or 'test'), deterministic in `seed`. Each has `qid` and `answer`."""

    def split_of(self, problem) -> str:
        """'train' or 'test': which split `problem` belongs to (training data must never hold a test question)."""

    def prompt(self, problem, attempts: Sequence[str] = ()) -> str:
        """The text the policy continues: the question, after it any previous attempts (revisions)."""

    def split_steps(self, completion: str) -> list[str]:
        """The completion's steps, delimiter included; they concatenate to the completion."""

    def is_final_step(self, step: str) -> bool:
        """True iff `step` states the final answer (the solution ends there)."""

    def through_answer(self, completion: str) -> str:
        """The completion cut after its final-answer step: what a verifier reads (trailing text is no step)."""

    def extract_answer(self, text) -> Hashable | None:
        """The final answer of a completion, or None; never raises."""

    def is_correct(self, problem, text) -> bool:
        """True iff the completion's final answer is the problem's answer; never raises."""

    def features(self, problem) -> dict[str, Any]:
        """Per-problem columns that tables carry next to the qid (e.g. num_steps; subject, level)."""

    def step_truth(self, problem, completion: str) -> list[bool] | None:
        """Ground truth per step (still on a correct path), where the task knows it; None otherwise."""
