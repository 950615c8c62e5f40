"""argparse types shared by the commands: numbers checked where they are parsed.

A value argparse accepts must be one the command can act on: a job id Postgres can hold, a
count that is not negative, a number of days that is finite and fits a timestamp. A bad one
is a usage error (exit 2) naming the option, never a database error or a traceback later.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["DAYS", "JOB_ID", "PORT", "PROBABILITY", "SECONDS", "number", "whole_number"]

#: Largest value of a Postgres bigint (job ids).
BIGINT_MAX = 2**63 - 1


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """A type for a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not between {low} and {high}")
        return value

    parse.__name__ = "whole number"
    return parse


def number(low: float, high: float, *, above_low: bool = False) -> Callable[[str], float]:
    """A type for a finite number from ``low`` (excluded with ``above_low``) to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if above_low and not low < value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be greater than {low:g} and at most {high:g}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not between {low:g} and {high:g}")
        return value + 0.0  # -0.0 becomes 0.0

    parse.__name__ = "number"
    return parse


#: A job id (a Postgres bigint, ids start at 1).
JOB_ID = whole_number(1, BIGINT_MAX)
#: A retention or age in days: finite, not negative, at most a century.
DAYS = number(0, 36_500)
#: A duration in seconds: finite, not negative, at most a day.
SECONDS = number(0, 86_400)
#: A probability.
PROBABILITY = number(0, 1)
#: A TCP port (0: any free port).
PORT = whole_number(0, 65_535)
