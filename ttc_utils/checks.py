"""Parameter checks with one wording for every error: `name=value is not allowed: expected ...`.

Any module may use them (the notebook configs, stage configs), so a bad value always reads the same way and
names the parameter the user set.

    check_int("seed", seed, lo=0)
    check_positive("temperature", temperature)   # rejects 0, negatives, inf and nan
"""
from __future__ import annotations

import math


def fail(name: str, value, allowed: str):
    """Raise ValueError naming `name` and `value`; `allowed` says what is expected. numpy scalars are shown as plain
    Python values (`3`, not `np.int64(3)`)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    raise ValueError(f"{name}={value!r} is not allowed: expected {allowed}")


def check(ok: bool, name: str, value, allowed: str) -> None:
    """Raise ValueError naming `name` and `value` unless `ok`; `allowed` says what is expected."""
    if not ok:
        fail(name, value, allowed)


def is_int(value) -> bool:
    """An int that is not a bool (True would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value, lo: int = 1) -> None:
    check(is_int(value) and value >= lo, name, value, f"an int >= {lo}")


def check_positive(name: str, value) -> None:
    """A finite number > 0: inf and nan pass `> 0` comparisons or fail silently downstream, so they are errors."""
    check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0,
          name, value, "a finite float > 0")


def is_power_of_two(value) -> bool:
    return is_int(value) and value >= 1 and value & (value - 1) == 0


def check_choice(name: str, value, choices) -> None:
    check(value in choices, name, value, f"one of {tuple(choices)}")
