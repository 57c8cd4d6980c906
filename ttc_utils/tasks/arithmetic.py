"""The embedded arithmetic world (`ttc_utils.world`) as a task: one step per line, a final line `A:<answer>`.

    task = ArithmeticTask(WorldConfig())
    problems = task.problems("test", 5, seed=0)
    task.prompt(problems[0])                      # 'Q:\\n7+5*3-8\\n'
    task.is_correct(problems[0], "2*3-8\\n6-8\\n8\\nA:8\\n")
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import world
from ..world import Problem, WorldConfig

STEP_END = "\n"
ANSWER_PREFIX = "A:"


@dataclass(frozen=True)
class ArithmeticTask:
    world: WorldConfig = field(default_factory=WorldConfig)
    name: str = "arithmetic"
    step_delimiter: str = STEP_END

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        return world.generate(self.world, n, split, seed)

    def split_of(self, problem: Problem) -> str:
        return world.split_of(problem.question)

    @property
    def key(self) -> str:
        return self.name  # the world's knobs change the questions, which every cache key already hashes

    def question(self, problem: Problem) -> str:
        return problem.prompt

    def prompt(self, problem: Problem, attempts: Sequence[str] = ()) -> str:
        # each previous attempt (as written) is followed by the question again, the slot for the next attempt: the
        # prompt then always ends where a solution starts, and an answer line is followed by eos only when it ends
        # the model's own attempt (with nothing after the last attempt, "A:x" was followed by another attempt in
        # context and by eos after the target, and the model learnt to stop at once or to write several attempts)
        return problem.prompt + "".join((a if a.endswith(STEP_END) else a + STEP_END) + problem.prompt
                                        for a in attempts)

    def split_steps(self, completion: str) -> list[str]:
        if not isinstance(completion, str) or not completion:
            return []
        pieces = completion.split(STEP_END)
        steps = [p + STEP_END for p in pieces[:-1]]
        return steps + ([pieces[-1]] if pieces[-1] else [])

    def is_final_step(self, step: str) -> bool:
        return step.lstrip(STEP_END).startswith(ANSWER_PREFIX)

    def through_answer(self, completion: str) -> str:
        start = 0
        for line in completion.split(STEP_END):
            if line.startswith(ANSWER_PREFIX):
                end = start + len(line)
                return completion[:end + 1] if end < len(completion) else completion
            start += len(line) + 1
        return completion

    def extract_answer(self, text) -> int | None:
        return world.extract_answer(text)

    def is_correct(self, problem: Problem, text) -> bool:
        return world.grade(text, problem.answer)

    def features(self, problem: Problem) -> dict:
        return {"num_steps": problem.num_steps}

    def step_truth(self, problem: Problem, completion: str) -> list[bool]:
        return world.step_labels(problem, completion)

    def max_solution_tokens(self) -> int:
        """A bound on a correct solution's tokens (one per character): longer samples are garbage."""
        return world.max_solution_chars(self.world)

    def max_step_tokens(self) -> int:
        """The longest line of a correct solution, newline excluded: the step-token cap search has always used.

        (A step of exactly that length is cut before its newline and so counts as final: kept as measured.)"""
        return world.max_line_chars(self.world)
