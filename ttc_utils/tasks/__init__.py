"""Tasks by name: `get_task("arithmetic", world=WorldConfig())`, `get_task("math", path=...)`.

A new task is one module implementing `tasks.base.Task` plus one `register_task` call below.
"""
from __future__ import annotations

from collections.abc import Callable

from ..checks import check_choice
from .base import Task

TASKS: dict[str, Callable[..., Task]] = {}


def register_task(name: str, factory: Callable[..., Task]) -> None:
    TASKS[name] = factory


def get_task(name: str, **kwargs) -> Task:
    check_choice("task", name, sorted(TASKS))
    return TASKS[name](**kwargs)


def _register_builtin() -> None:
    from .arithmetic import ArithmeticTask
    from .math import MathTask  # math-verify, a dependency, is imported where it grades, not here
    register_task("arithmetic", ArithmeticTask)
    register_task("math", MathTask)


_register_builtin()

__all__ = ["TASKS", "Task", "get_task", "register_task"]
