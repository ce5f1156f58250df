"""What can be wrong in what a user wrote, said where: one located problem type.

A ``Problem`` names the file, the line and the element (when there is one) and says what
to change. ``DefinitionError`` carries every problem found in a definition, its registry,
forms or scenario; ``CalendarFileError`` the problem found in a calendar file.
``CalendarError`` is any calendar, offset or deadline that cannot be read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_MESSAGE = 400  # characters of a problem's message shown (a message quoting a huge value is cut)
MAX_SHOWN = 50  # problems a DefinitionError's text shows; the rest are counted


@dataclass(frozen=True)
class Problem:
    """What is wrong, where: ``element`` is the id of the element (or the code of the unit,
    criterion...) at fault, ``kind`` says which of those it is."""

    file: str
    line: int
    element: str | None
    message: str
    kind: str = "element"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f" {self.kind} '{shorten(str(self.element), 80)}':" if self.element else ""
        return printable(f"{where}:{what} {shorten(self.message, MAX_MESSAGE)}")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """``text`` on one line, its control characters (a line break, a terminal escape) written out."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def listed(names, limit: int = 10) -> str:
    """Names joined by commas, at most ``limit`` of them (then how many there are in all).

    ``names`` is a list or other sequence (sliced, not copied) or any iterable."""
    if not hasattr(names, "__getitem__"):
        names = list(names)
    shown = ", ".join(str(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, … ({len(names)} in all)"


class DefinitionError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(shown_lines(problems)))


def shown_lines(problems: list[Problem], limit: int = MAX_SHOWN) -> list[str]:
    """One line per problem, the first ``limit`` of them, then how many more there are."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit:,} more problem(s): fix these first")
    return lines


class CalendarError(ValueError):
    """A calendar file, an offset or a deadline could not be read; the message says what to change."""


class CalendarFileError(CalendarError):
    """A calendar file that cannot be used, with the problem located in it.

    Its text reads ``<file>, line <n>: <message>`` (the calendar's own wording).
    """

    def __init__(self, problem: Problem):
        self.problems = [problem]
        where = f", line {problem.line}" if problem.line else ""
        super().__init__(f"{problem.file}{where}: {problem.message}")
